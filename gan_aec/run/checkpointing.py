"""The one place that talks to orbax: a run's checkpoints in `WORKDIR/checkpoints/<step>/`.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a process
killed mid-save leaves the previous checkpoint as the latest loadable one (the half-written folder
is ignored, and removed when the next run opens the directory). A committed checkpoint damaged
later (a file that no longer reads, or values that differ from those saved: each checkpoint of
a one-process run carries a hash of its state, checked on restore) is moved aside to
WORKDIR/damaged_checkpoints/<step> with a warning, and the run resumes from the one before
(`Checkpointer.restore_latest`); with none before it, or on several processes or a bucket, a
CheckpointError says which checkpoint and what to do.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

from absl import logging
from etils import epath
from etils.epath import backend as epath_backend
import jax
import numpy as np
import orbax.checkpoint as ocp

from gan_aec import errors
from gan_aec.run import workdir as run_workdir


MAX_TO_KEEP = 3  # Checkpoints a run keeps (the newest).
DIGEST_KEY = 'state_blake2b'  # The hash of the saved state, in each checkpoint's metadata.


class Checkpointer:
  """A run's training states in `directory` (its Layout's checkpoints): saves every `every_steps`
  steps (and when forced), keeps the newest `max_to_keep` and, with `keep_every_steps`, every
  checkpoint at a multiple of it (orbax's preservation policies).

  The loop's state carries a replica axis [R, ...]; a one-replica run's checkpoints hold the
  state without it (`squeeze`), as the one model it is, so that they restore anywhere a single
  model's state does (gan_aec.evaluate, a researcher's own code).
  """

  def __init__(self, directory: str, every_steps: int, max_to_keep: int = MAX_TO_KEEP, *,
               squeeze: bool = False, keep_every_steps: int | None = None):
    self.directory = directory
    self.squeeze = squeeze
    policies = ocp.checkpoint_managers
    keep = policies.LatestN(max_to_keep)
    if keep_every_steps:
      keep = policies.AnyPreservationPolicy([keep, policies.EveryNSteps(keep_every_steps)])
    self._options = ocp.CheckpointManagerOptions(
        save_decision_policy=policies.FixedIntervalPolicy(every_steps),
        preservation_policy=keep, create=True, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state: Any, step: int | None = None) -> Any:
    """Restores `step` (default: latest) into the structure, dtypes and shardings of
    abstract_state (the stacked [R, ...] state, e.g. from jax.eval_shape); CheckpointError when
    it cannot be read or holds values that are not finite."""
    step = self.latest_step() if step is None else step
    path = os.path.join(self.directory, str(step))
    target = jax.tree.map(_squeezed_abstract, abstract_state) if self.squeeze else abstract_state
    _drop_reports_to_closed_event_loops()  # Before: some arrive while the restore fails.
    try:
      saved = self._manager.restore(step, args=ocp.args.StandardRestore(target))
      expected = (self._manager.metadata(step).custom_metadata or {}).get(DIGEST_KEY)
    except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many kinds)
      first = next((line for line in str(e).splitlines() if line.strip()), '')[:200]
      raise errors.CheckpointError(
          f'Checkpoint {path} cannot be restored ({type(e).__name__}: {first}): it is damaged, or '
          'the config describes another model than the one saved.') from e
    if expected is not None and jax.process_count() == 1 and state_digest(saved) != expected:
      raise errors.CheckpointError(f'Checkpoint {path} does not hold the values that were saved '
                                   '(its hash differs): a file in it is damaged.')
    if not self.squeeze:
      return saved
    return jax.jit(_add_replica_axis, out_shardings=jax.tree.map(lambda a: a.sharding,
                                                                 abstract_state))(saved)

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any]:
    """(step, state) of the newest checkpoint that restores into abstract_state.

    A damaged one (see `restore`; its saved shapes, where still readable, those of the target) is
    moved aside to WORKDIR/damaged_checkpoints/<step>, with a warning, and the one before it is
    tried: the run loses the steps since that one, never a run. Raises CheckpointError, naming
    the checkpoint and the fix, when no checkpoint restores, when the saved state has another
    shape (another model: nothing is moved), or on several processes or a bucket (where moving
    is not safe: the message says what to move).
    """
    while True:
      step = self.latest_step()
      try:
        return step, self.restore(abstract_state, step)
      except errors.CheckpointError as e:
        earlier = [s for s in self._manager.all_steps() if s < step]
        path = os.path.join(self.directory, str(step))
        aside = os.path.join(os.path.dirname(self.directory), 'damaged_checkpoints', str(step))
        if not earlier:
          raise errors.CheckpointError(f'{e} There is no earlier checkpoint: use a new --workdir '
                                       'to start over.') from e
        if (jax.process_count() > 1 or run_workdir.is_remote(self.directory)
            or not self._saved_shapes_match(step, abstract_state)):
          raise errors.CheckpointError(f'{e} To resume from step {max(earlier)} instead, move it '
                                       f'aside (mv {path} {aside}) and re-run the same command.'
                                       ) from e
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        os.rename(path, aside)
        logging.warning('%s Moved it to %s; resuming from step %d, the checkpoint before it.',
                        e, aside, max(earlier))
        # A new manager: one that read the damaged folder may have taken it for a checkpoint of
        # other items (e.g. one whose state folder is gone) and would read the next one so too.
        self._manager.close()
        self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def _saved_shapes_match(self, step: int, abstract_state: Any) -> bool:
    """False when checkpoint `step`'s metadata, still readable, describes another state (the
    config's model is not the one saved); True when its arrays have the target's shapes or it
    cannot be read."""
    try:
      with ocp.StandardCheckpointer() as checkpointer:
        saved = checkpointer.metadata(
            os.path.join(self.directory, str(step), 'default')).item_metadata.tree
      saved_shapes = sorted(tuple(m.shape) for m in jax.tree.leaves(saved))
    except Exception:  # pylint: disable=broad-except  (a damaged metadata file)
      return True
    target = jax.tree.map(_squeezed_abstract, abstract_state) if self.squeeze else abstract_state
    return saved_shapes == sorted(tuple(a.shape) for a in jax.tree.leaves(target))

  def should_save(self, step: int) -> bool:
    """Whether save(step) would save under the interval policy."""
    return self._manager.should_save(step)

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves the stacked `state` (asynchronously) if the interval policy says so or `force`;
    True if a save started."""
    if not (force or self.should_save(step)):
      return False
    if self.squeeze:
      state = jax.tree.map(lambda x: x[0], state)
    digest = {DIGEST_KEY: state_digest(state)} if jax.process_count() == 1 else None
    return self._manager.save(step, args=ocp.args.StandardSave(state), custom_metadata=digest,
                              force=force)

  def close(self) -> None:
    """Waits for pending saves to commit."""
    self._manager.wait_until_finished()
    self._manager.close()


class BestCheckpointer:
  """`directory/<step>/` (a replica's best_checkpoint in its run's Layout): the one model's state
  with the lowest `metric` seen so far (one kept: orbax's BestN preservation policy).

  The metric's value is stored inside the checkpoint (orbax metrics), so the record of the best and
  the state it belongs to are committed together; a resumed run reads it back.
  """

  def __init__(self, directory: str, metric: str = 'fid'):
    self.metric = metric
    self.directory = directory
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            # best_fn makes orbax store each checkpoint's metrics; BestN keeps the end of the
            # sorted order (reverse=True puts the lowest value there).
            best_fn=lambda m: m[metric], best_mode='min',
            preservation_policy=ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda m: m[metric], reverse=True, n=1,
                keep_checkpoints_without_metrics=False),
            create=True, cleanup_tmp_directories=True))

  def best(self) -> tuple[int, float] | None:
    """(step, metric value) of the kept checkpoint, or None before the first."""
    self._manager.wait_until_finished()  # A save in flight has no readable metrics yet.
    kept = [(float(self._manager.metrics(step)[self.metric]), step)
            for step in self._manager.all_steps()]
    if not kept:
      return None
    value, step = min(kept)
    return step, value

  def offer(self, step: int, state: Any, value: float) -> bool:
    """Saves `state` as the best if `value` is lower than the kept one's; True if it did."""
    best = self.best()
    if best is not None and not value < best[1]:
      return False
    return self._manager.save(step, args=ocp.args.StandardSave(state),
                              metrics={self.metric: float(value)}, force=True)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _drop_reports_to_closed_event_loops() -> None:
  """Installs (once per process) a sys.unraisablehook that drops `RuntimeError: Event loop is
  closed` and passes everything else on: when a restore fails on a damaged file, TensorStore's
  other reads still in flight report back to the event loop orbax has closed, and each report
  would print a traceback (dozens of them) around the one line that says what failed."""
  previous = sys.unraisablehook
  if getattr(previous, 'drops_reports_to_closed_event_loops', False):
    return

  def hook(unraisable):
    if (isinstance(unraisable.exc_value, RuntimeError)
        and str(unraisable.exc_value) == 'Event loop is closed'):
      return
    previous(unraisable)
  hook.drops_reports_to_closed_event_loops = True
  sys.unraisablehook = hook


def state_digest(state: Any) -> str:
  """A hash of a state's leaves (paths, shapes, dtypes, values): saved with each checkpoint of a
  one-process run and checked on restore."""
  hasher = hashlib.blake2b(digest_size=16)
  for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]:
    array = np.asarray(leaf)
    hasher.update(f'{jax.tree_util.keystr(path)}{array.shape}{array.dtype}'.encode())
    hasher.update(np.ascontiguousarray(array).tobytes())
  return hasher.hexdigest()


def committed_steps(directory: str) -> list[int]:
  """Steps of the committed checkpoints in a checkpoint directory (half-written ones excluded)."""
  path = epath.Path(directory)
  if run_workdir.is_remote(directory):
    # fsspec keeps each process's listings of a bucket; other processes add checkpoints.
    epath_backend.fsspec_backend.fs(str(directory)).invalidate_cache(str(directory))
  if not path.is_dir():
    return []
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def restore_on_one_device(directory: str, step: int, abstract_state: Any = None) -> Any:
  """The checkpoint `directory/<step>` on this process's first device, whatever number of devices
  wrote it: for evaluation and inference outside the loop. Into the structure of abstract_state
  (e.g. jax.eval_shape of a task's create_state) when given, else as saved (nested dicts)."""
  path = os.path.join(directory, str(step), 'default')
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    tree = (checkpointer.metadata(path).item_metadata.tree if abstract_state is None
            else abstract_state)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
    return checkpointer.restore(path, target)
  except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many kinds)
    raise errors.CheckpointError(
        f'Checkpoint {os.path.dirname(path)} cannot be read ({type(e).__name__}: '
        f'{str(e)[:300]}). It is damaged, or holds a different model than its config.json says.'
    ) from e
  finally:
    checkpointer.close()


def _squeezed_abstract(leaf: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
  """A stacked leaf's description without its replica axis (of size 1), replicated on its mesh."""
  sharding = jax.sharding.NamedSharding(leaf.sharding.mesh, jax.sharding.PartitionSpec())
  return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype, sharding=sharding)


def _add_replica_axis(tree: Any) -> Any:
  return jax.tree.map(lambda x: x[None], tree)


def restore_replicas_on_one_device(directory: str, step: int, abstract_one: Any,
                                   num_replicas: int) -> Any:
  """A run's checkpoint `directory/<step>` as the stacked state [R, ...] of its `num_replicas`
  replicas, on this process's first device (a one-replica run's checkpoint holds the state
  without the axis: it comes back with one). abstract_one describes one replica's state."""
  if num_replicas == 1:
    return _add_replica_axis(restore_on_one_device(directory, step, abstract_one))
  stacked = jax.tree.map(lambda a: jax.ShapeDtypeStruct((num_replicas, *a.shape), a.dtype),
                         abstract_one)
  return restore_on_one_device(directory, step, stacked)
