"""A run's start, everything before its first step: `set_up(config, workdir) -> (Run, state)`.

It checks the config and the workdir before anything is read or written, loads the data, builds
the model family's Task, the replicas, the mesh, the jitted steps, the checkpointers and the
logger, and creates the step-0 state or restores the latest checkpoint into the state's abstract
shape (jax.eval_shape). gan_aec.run.loop trains from there.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
from typing import Any, Callable

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np

import gan_aec
from gan_aec import data as datasets
from gan_aec.data import batching
from gan_aec.data.splits import Data
from gan_aec import errors
from gan_aec.errors import ConfigError
from gan_aec.run import (checkpointing, config as config_lib, metric_logging,
                         replicas as replicas_lib, sample_quality, sharding, tasks)
from gan_aec.run import workdir as run_workdir

# Streams derived from each seed; each step folds its step number into the train stream.
_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM = 0, 1, 2


def stream_keys(seeds: tuple[int, ...], stream: int, mesh: jax.sharding.Mesh) -> jax.Array:
  """fold_in(key(seed), stream) of each replica's seed: [R] keys split over the replica axis."""
  keys = jax.numpy.stack([jax.random.fold_in(jax.random.key(seed), stream) for seed in seeds])
  return sharding.put_keys(keys, sharding.replica_sharding(mesh))


_CODE_PATHS = ('gan_aec', 'configs', 'pyproject.toml')  # What trains a run (not its results).


def code_version() -> str:
  """The package version, and in a git checkout its commit (with '+changes' when the code, the
  configs or pyproject.toml differ from it): what the run_start record says trained the run."""
  version = gan_aec.__version__
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if not os.path.exists(os.path.join(root, 'pyproject.toml')):
    return version  # An installed package: not a checkout of its own.
  try:
    commit = subprocess.run(['git', 'rev-parse', '--short=12', 'HEAD'], cwd=root, timeout=10,
                            capture_output=True, text=True, check=True).stdout.strip()
    changed = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--',
                              *_CODE_PATHS], cwd=root, timeout=10, capture_output=True, text=True,
                             check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return version  # An installed package, or no git.
  return f'{version} git {commit}{"+changes" if changed else ""}'


@dataclasses.dataclass(frozen=True)
class Run:
  """What set_up prepares once for a run; nothing here changes while it trains."""
  config: ml_collections.ConfigDict
  layout: run_workdir.Layout
  task: tasks.Task
  data: Data
  mesh: jax.sharding.Mesh
  replicas: replicas_lib.Replicas
  batches: dict[int, batching.TrainBatches]  # One per seed: replicas of one seed share them.
  example_batch: dict[str, np.ndarray]  # One image's batch: the shapes of every batch.
  groups: sharding.ReplicaGroups  # The replicas each call of the steps trains.
  train_fn: sharding.ReplicaStep  # Both take the state in its groups (groups.split).
  eval_fn: sharding.ReplicaStep
  # Per group of replicas, as the steps take them:
  train_rngs: tuple[jax.Array, ...]  # Keys.
  eval_rngs: tuple[jax.Array, ...]
  step_hyperparameters: tuple[dict[str, jax.Array], ...]  # {name: values}, the swept arguments.
  quality: sample_quality.SampleQuality | None
  checkpointer: checkpointing.Checkpointer
  best: tuple[checkpointing.BestCheckpointer, ...]  # One per replica with an extractor, else ().
  logger: metric_logging.MetricLogger
  start_step: int
  is_writer: bool

  def close(self) -> None:
    """Waits for the saves in flight to commit, and flushes the logs."""
    _close(self.checkpointer, self.best)
    self.logger.close()


def _close(checkpointer: checkpointing.Checkpointer,
           best: tuple[checkpointing.BestCheckpointer, ...]) -> None:
  """Waits for the checkpoint managers' saves in flight to commit, and closes them."""
  checkpointer.close()
  for b in best:
    b.close()


def _extractor(config: ml_collections.ConfigDict,
               task: tasks.Task) -> sample_quality.FeatureExtractor | None:
  """The sample metrics' network when config.sample_metrics.extractor is set (else None)."""
  spec = config_lib.extractor_spec(config)
  if spec is None:
    return None
  if task.drawing.sample_images is None:
    raise ConfigError(f'config.sample_metrics.extractor is set, but {config.model} does not '
                      'generate samples; unset it.')
  return sample_quality.load_extractor(spec)


def _example_batch(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """A batch of one image shaped as the data will be (zeros): enough for the state's shapes."""
  size = config_lib.image_size(config)
  batch = {'image': np.zeros((1, size, size, config_lib.channels(config)), np.float32)}
  if datasets.get(config.dataset.name).has_labels:
    batch['label'] = np.zeros((1,), np.int32)
  return batch


def layout(config: ml_collections.ConfigDict, workdir: str) -> run_workdir.Layout:
  """Where the run of `config` in `workdir` keeps each of its files (its replicas' folders)."""
  task = tasks.build_task(config)
  return run_workdir.Layout(workdir, replicas_lib.from_config(config, task.step_hyperparameters)
                            .names())


def _state_fn(task: tasks.Task, replicas: replicas_lib.Replicas, mesh: jax.sharding.Mesh,
              example_batch: dict[str, np.ndarray]) -> Callable[[], Any]:
  """A () -> step-0 state [R, ...]: the task's create_state vmapped over the replicas' init keys
  and jitted, with each replica's swept optimizer hyperparameters set (gan_aec.run.replicas).
  `jax.eval_shape` of it is the target a resume restores into."""
  stacked = sharding.replica_sharding(mesh)

  def create(keys, batch, swept):
    states = jax.vmap(task.create_state, in_axes=(0, None))(keys, batch)
    for name, values in swept.items():
      states = replicas_lib.set_optimizer_hyperparameter(states, name, values)
    return states

  # Jitted: one compile instead of one per initializer op (seconds saved on every start). The
  # keys and values are arguments: a multi-process jit cannot close over global arrays.
  swept = {name: sharding.put_global(values, stacked)
           for name, values in replicas.optimizer_hyperparameters().items()}
  return functools.partial(jax.jit(create, out_shardings=stacked),
                           stream_keys(replicas.seeds, _INIT_STREAM, mesh), example_batch, swept)


def set_up(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, Any] | None:
  """Everything before the first step: (the Run, the state to train from, in the groups the
  steps take: run.groups); None when the run in workdir is already finished. Nothing
  is written before the config, the workdir and the data have been checked."""
  # Everything a user can get wrong is checked before the data are read or anything is written:
  # the config, its sweep, the workdir's earlier run, the extractor, room for the checkpoints.
  task = tasks.build_task(config)  # (Fills in the fields derived from others.)
  replicas = replicas_lib.from_config(config, task.step_hyperparameters)
  mesh = sharding.make_mesh(config, len(replicas))
  config_lib.validate(config, mesh.shape['data'])
  layout = run_workdir.Layout(workdir, replicas.names())
  saved_config = run_workdir.saved_config(workdir)
  allowed_changes = run_workdir.check_resume(config, workdir, saved_config)
  extractor = _extractor(config, task)
  abstract_state = jax.tree.map(  # What a resume restores into, without creating a state.
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding.replica_sharding(mesh)),
      jax.eval_shape(_state_fn(task, replicas, mesh, _example_batch(config))))
  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract_state))
  run_workdir.check_usable(workdir, state_bytes,
                           checkpoints_kept=checkpointing.MAX_TO_KEEP + (1 if extractor else 0))
  start_step = max(checkpointing.committed_steps(layout.checkpoints), default=0)
  if start_step >= config.num_train_steps:
    logging.info('The run in %s is already at step %d of %d; nothing to do.', workdir,
                 start_step, config.num_train_steps)
    metrics_file = epath.Path(layout.metrics_file)
    if jax.process_index() == 0 and metrics_file.exists():  # A kill may have cut its last line.
      metric_logging.drop_records_after(metrics_file, start_step)
    return None

  data = datasets.load(config.dataset, config_lib.image_size(config))
  run_workdir.check_data_source(config, workdir, saved_config, data.source)
  with config.unlocked():
    config.dataset.source = data.source
  try:
    batches = {seed: batching.TrainBatches(data.train, config.batch_size, seed,
                                           value_range=task.image_range)
               for seed in sorted(set(replicas.seeds))}
  except ValueError as e:
    raise ConfigError(str(e)) from e
  example_batch = batches[replicas.seeds[0]].get(0, slice(0, 1))
  create_state = _state_fn(task, replicas, mesh, example_batch)
  # The first writes: the checkpoint folders (orbax creates them).
  checkpointer = checkpointing.Checkpointer(layout.checkpoints, config.checkpoint_every_steps,
                                            squeeze=len(replicas) == 1,
                                            keep_every_steps=config.get('keep_every_steps'))
  best = tuple(checkpointing.BestCheckpointer(files.best_checkpoint)
               for files in layout.replicas()) if extractor else ()
  train_fn, eval_fn = sharding.jit_steps(task, mesh, len(replicas))
  if start_step:
    try:
      start_step, state = checkpointer.restore_latest(abstract_state)
    except errors.CheckpointError:  # Close orbax's threads first: no tracebacks at exit.
      _close(checkpointer, best)
      raise
    logging.info('Resumed from %s at step %d.', checkpointer.directory, start_step)
  else:
    state = create_state()
  state = train_fn.groups.split(state)  # As the steps take it: one state per call.
  # After the restore, so a run that cannot resume leaves the data dir as it was.
  quality = (sample_quality.SampleQuality(  # Caches the real images' features in the data dir.
      extractor, data.test, config.sample_metrics.num_samples, datasets.cache_dir(config.dataset),
      sample_quality.dataset_id(config)) if extractor else None)

  is_writer = jax.process_index() == 0
  if is_writer and (allowed_changes or saved_config is None):
    run_workdir.write_config(config, workdir)
  logger = metric_logging.MetricLogger(layout, is_writer=is_writer, resume_step=start_step)
  logger.write_hparams(json.loads(config.to_json_best_effort()))
  logger.write_run_start(start_step, {
      'code': code_version(), 'model': config.model, 'dataset.name': config.dataset.name,
      'dataset.source': data.source, 'train_examples': len(data.train),
      'test_examples': len(data.test), 'batch_size': config.batch_size,
      'devices': mesh.size, 'processes': jax.process_count(),
      **({'replicas': replicas.labels()} if len(replicas) > 1 else {}),
      **({'config_changes': {k: list(v) for k, v in allowed_changes.items()}}
         if allowed_changes else {})})
  groups = train_fn.groups
  run = Run(config=config, layout=layout, task=task, data=data, mesh=mesh, replicas=replicas,
            batches=batches, example_batch=example_batch, groups=groups, train_fn=train_fn,
            eval_fn=eval_fn,
            train_rngs=groups.split(stream_keys(replicas.seeds, _TRAIN_STREAM, mesh)),
            eval_rngs=groups.split(stream_keys(replicas.seeds, _EVAL_STREAM, mesh)),
            step_hyperparameters=groups.split({
                k: sharding.put_global(v, sharding.replica_sharding(mesh))
                for k, v in replicas.step_hyperparameters().items()}),
            quality=quality, checkpointer=checkpointer, best=best, logger=logger,
            start_step=start_step, is_writer=is_writer)
  logging.info('Training %s from step %d to %d on %d device(s)%s, %s %s (%d train images).',
               config.model, start_step, config.num_train_steps, mesh.size,
               f', {len(replicas)} replicas' if len(replicas) > 1 else '', data.source,
               config.dataset.name, len(data.train))
  return run, state
