"""A run's workdir: where each of its files lies (`Layout`), and its identity, `config.json`,
compared with the config of every resume.

    WORKDIR/config.json  metrics.jsonl  eval.json  events.out.tfevents.*  checkpoints/<step>/
    WORKDIR/figures/  best_checkpoint/<step>/  sample_noise.npy  sample_progress.npz
                                                 (one replica: the run's own files)
    WORKDIR/replicas/<replica>/figures/ ...  best_checkpoint/<replica>/<step>/
                                                 (many replicas: each one's own files)

Re-running a command resumes the run in its workdir, so a workdir must never silently continue
with a different model, dataset or optimiser: the checkpoint would not fit, or worse, it would fit
and the curves would mix two experiments. Fields that only change how long or how often the loop
does things (RESUMABLE_FIELDS) may differ; any other difference stops the run before anything is
written, unless `--config.allow_config_change=True`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import uuid
from typing import Any

from etils import epath
from flax import traverse_util
import ml_collections

from gan_aec import errors

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'
EVAL_FILE = 'eval.json'


def is_remote(path: Any) -> bool:
  """Whether `path` is an object-store URL (gs://, s3://, ...) rather than a local path."""
  return '://' in str(path)


@dataclasses.dataclass(frozen=True)
class ReplicaFiles:
  """Where one replica's own files go (a one-replica run's are the workdir's own)."""
  root: str  # The workdir, or WORKDIR/replicas/<replica>.
  best_checkpoint: str  # WORKDIR/best_checkpoint[/<replica>]: the lowest-FID state.

  @property
  def figures(self) -> str:
    return _join(self.root, 'figures')

  @property
  def sample_noise(self) -> str:
    """The GAN's fixed sample latents (.npy)."""
    return _join(self.root, 'sample_noise.npy')

  @property
  def sample_progress(self) -> str:
    """The GAN's samples of the fixed latents at successive steps (.npz)."""
    return _join(self.root, 'sample_progress.npz')


@dataclasses.dataclass(frozen=True)
class Layout:
  """Every file of a run in `workdir`, for each of its replicas (`replica_names`: one name per
  replica; a one-replica run keeps the workdir's own folders). Every reader and writer of a
  workdir asks this object where things are."""
  workdir: str
  replica_names: tuple[str, ...] = ('',)

  def __post_init__(self):
    object.__setattr__(self, 'workdir', absolute(self.workdir))

  @property
  def config_file(self) -> str:
    return _join(self.workdir, CONFIG_FILE)

  @property
  def metrics_file(self) -> str:
    return _join(self.workdir, METRICS_FILE)

  @property
  def eval_file(self) -> str:
    return _join(self.workdir, EVAL_FILE)

  @property
  def checkpoints(self) -> str:
    """Every replica's training state, one checkpoint per saved step."""
    return _join(self.workdir, 'checkpoints')

  def replica(self, r: int) -> ReplicaFiles:
    if len(self.replica_names) == 1:
      return ReplicaFiles(root=self.workdir, best_checkpoint=_join(self.workdir, 'best_checkpoint'))
    name = self.replica_names[r]
    return ReplicaFiles(root=_join(self.workdir, 'replicas', name),
                        best_checkpoint=_join(self.workdir, 'best_checkpoint', name))

  def replicas(self) -> list[ReplicaFiles]:
    return [self.replica(r) for r in range(len(self.replica_names))]


def _join(*parts: str) -> str:
  return str(epath.Path(parts[0]).joinpath(*parts[1:]))

# Dotted config paths that may change between a run and its resume without changing the experiment.
RESUMABLE_FIELDS = frozenset({
    'num_train_steps', 'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
    'sample_every_steps', 'eval_batch_size', 'eval_at_start', 'allow_config_change',
    'conv_implementation',  # The same function and parameters in every implementation.
    'microbatch_size',  # The same gradient, computed in pieces.
    'cpu_data_parallel',  # The same gradient, over one CPU device or one per core.
    'keep_every_steps',  # Which checkpoints stay on disk.
    'dataset.data_dir', 'dataset.cache_dir', 'dataset.download', 'dataset.offline_fallback',
    'dataset.source',  # Filled in by the run after loading; compared by check_data_source.
})
RESUMABLE_PREFIXES = ('eval.', 'sample_metrics.')
# Fields added after runs already existed, with the value those runs had without them.
IMPLIED_DEFAULTS = {'compute_dtype': 'float32', 'num_seeds': 1,
                    'kernel_init': 'lecun_normal', 'rmsprop_bias_correction': False,
                    'dataset.test_images': None}
IMPLIED_DEFAULT_PREFIXES = {'sweep.': None}  # No sweep.


def flatten(tree: dict) -> dict[str, Any]:
  """A config's nested fields as dotted names: {'dataset': {'name': 'mnist'}} -> {'dataset.name':
  'mnist'}."""
  return traverse_util.flatten_dict(tree, sep='.')


def _as_plain(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def absolute(path: str) -> str:
  """A local path made absolute; an object-store URL (gs://, s3://) as it is."""
  return str(path) if is_remote(path) else os.path.abspath(path)


def write_whole(path: epath.Path, data: bytes | str) -> None:
  """Writes a file whole: a reader sees the old or the new content, never a part. Locally through
  a temporary file and a rename; an object store (gs://, s3://) writes each object whole anyway,
  and has no rename."""
  data = data.encode('utf-8') if isinstance(data, str) else data
  path = epath.Path(path)
  if is_remote(path):
    path.write_bytes(data)
    return
  tmp = path.parent / f'{path.name}.{uuid.uuid4().hex}.tmp'
  tmp.write_bytes(data)
  tmp.replace(path)


def saved_config(workdir: str) -> dict | None:
  """The config.json a run left in workdir, or None when there is none."""
  path = epath.Path(Layout(workdir).config_file)
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text(encoding='utf-8'))
  except (OSError, ValueError) as e:
    raise errors.WorkdirMismatchError(
        f'{path} is unreadable ({e}). Restore it, or move it away to resume without the check.'
    ) from e


def differences(saved: dict, config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
  """{dotted field: (saved value, new value)} for the fields that define the experiment."""
  old, new = flatten(saved), flatten(_as_plain(config))
  for key, value in IMPLIED_DEFAULTS.items():
    if key in new:
      old.setdefault(key, value)
  for prefix, value in IMPLIED_DEFAULT_PREFIXES.items():
    for key in new:
      if key.startswith(prefix) and not any(k.startswith(prefix) for k in old):
        old.setdefault(key, value)
  return {key: (old.get(key, '<absent>'), new.get(key, '<absent>'))
          for key in sorted(set(old) | set(new))
          if old.get(key, '<absent>') != new.get(key, '<absent>')
          and key not in RESUMABLE_FIELDS and not key.startswith(RESUMABLE_PREFIXES)}


def check_resume(config: ml_collections.ConfigDict, workdir: str,
                 saved: dict | None) -> dict[str, tuple[Any, Any]]:
  """Raises WorkdirMismatchError when `saved` (workdir's config.json) is a different experiment.

  Returns the differences that were allowed (`config.allow_config_change`), else {}.
  """
  if saved is None:
    return {}
  changed = differences(saved, config)
  if changed and not config.get('allow_config_change', False):
    fields = '; '.join(f'{key}: {old!r} in the workdir, {new!r} now'
                       for key, (old, new) in changed.items())
    raise errors.WorkdirMismatchError(
        f'{workdir} holds a run with a different config: {fields}. Use another --workdir for a '
        'new experiment, or pass --config.allow_config_change=True to continue this run with the '
        'new values anyway (its curves and checkpoints will then mix both settings).')
  return changed


def check_data_source(config: ml_collections.ConfigDict, workdir: str, saved: dict | None,
                      source: str) -> None:
  """Raises WorkdirMismatchError when the run in `saved` trained on other data (e.g. the bundled
  8,000 digits and now the full MNIST), unless config.allow_config_change."""
  old = (saved or {}).get('dataset', {}).get('source')
  if old and old != source and not config.get('allow_config_change', False):
    raise errors.WorkdirMismatchError(
        f'{workdir} holds a run trained on dataset.source={old!r}, but the data now comes from '
        f'{source!r}. Use another --workdir, or pass --config.allow_config_change=True.')


# Beyond the checkpoints: metrics, TensorBoard events, figures.
_SPACE_MARGIN_BYTES = 64 * 2 ** 20


def check_usable(workdir: str, checkpoint_bytes: int, checkpoints_kept: int = 4) -> None:
  """WorkdirUnusableError, before anything is trained, when workdir cannot be created or written,
  or (on a local disk) has less free space than `checkpoints_kept` checkpoints of
  `checkpoint_bytes` and a margin for metrics and figures. A local workdir that does not exist
  yet is not created here: its nearest existing folder must be writable."""
  try:
    path = epath.Path(workdir)
    if is_remote(workdir):
      path.mkdir(parents=True, exist_ok=True)  # Buckets have no folders to leave behind.
      existing = path
    else:
      existing = pathlib.Path(os.path.abspath(os.path.expanduser(workdir)))
      while not existing.exists():
        existing = existing.parent
      if not existing.is_dir():
        raise NotADirectoryError(f'{existing} is a file')
    probe = epath.Path(existing) / f'.write_test-{uuid.uuid4().hex}'
    probe.write_text('ok', encoding='utf-8')
    probe.unlink()
  except OSError as e:
    raise errors.WorkdirUnusableError(
        f'Cannot write to the workdir {workdir} ({type(e).__name__}: {e}). Choose a --workdir '
        'you can write to.') from e
  if is_remote(workdir):
    return  # An object store: no disk to fill.
  needed = checkpoints_kept * checkpoint_bytes + _SPACE_MARGIN_BYTES
  free = shutil.disk_usage(existing).free
  if free < needed:
    raise errors.WorkdirUnusableError(
        f'The disk of {workdir} has {free / 2**20:.0f} MB free; this run needs about '
        f'{needed / 2**20:.0f} MB ({checkpoints_kept} checkpoints of '
        f'{checkpoint_bytes / 2**20:.1f} MB, metrics and figures). '
        'Free some space or choose another --workdir.')


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes config.json atomically (a kill mid-write leaves the previous one)."""
  write_whole(epath.Path(Layout(workdir).config_file),
              config.to_json_best_effort(indent=2, sort_keys=True) + '\n')
