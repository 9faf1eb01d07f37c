"""The training loop every model shares: data, sharding, steps, evaluation, logging, checkpoints.

    train_and_evaluate(config, workdir)

Per step the loop puts this process's slice of the global batch on the devices, calls the model
family's jitted `train_step(state, batch, rng)` (rng = fold_in(train key, step)), and every
`log_every_steps` writes metrics and progress, every `eval_every_steps` (and at the end) evaluates
on the test split and writes figures, and every `checkpoint_every_steps` (and at the end) saves.
Re-running with the same workdir resumes from the latest checkpoint; a finished run does nothing.
"""

from __future__ import annotations

import math
import os
from typing import Any

from absl import logging
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from gan_aec import (checkpointing, cpu_cores, datasets, errors, input_pipeline, metric_logging,
                     preemption, sample_quality, splits, tasks)
from gan_aec import workdir as run_workdir

# Streams derived from config.seed; each step folds its step number into the train stream.
_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM = 0, 1, 2
_SAMPLE_METRICS_STREAM = 4  # The latents of the samples scored by the sample metrics.


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops a bad config with a message before any data is read or anything is compiled."""
  if config.model not in tasks.REGISTRY:
    raise errors.ConfigError(f'Unknown model {config.model!r}; choose one of '
                             f'{sorted(tasks.REGISTRY)}.')
  if config.dataset.name not in datasets.DATASETS:
    raise errors.ConfigError(f'Unknown dataset.name {config.dataset.name!r}; choose one of '
                             f'{sorted(datasets.DATASETS)}.')
  image_size = config.get('image_size', 28)
  sizes = datasets.DATASETS[config.dataset.name][1]
  if image_size not in sizes:
    raise errors.ConfigError(f'image_size={image_size} is not available for '
                             f'{config.dataset.name} (available: {", ".join(map(str, sizes))}).')
  for field in ('batch_size', 'num_train_steps', 'log_every_steps', 'eval_every_steps',
                'checkpoint_every_steps', 'eval_batch_size', 'sample_every_steps'):
    if field in config and int(config[field]) <= 0:
      raise errors.ConfigError(f'config.{field} must be a positive integer, got {config[field]}.')
  devices = len(mesh_devices(config))
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] % devices:
      raise errors.ConfigError(f'config.{field}={config[field]} is not divisible by the {devices} '
                               f'devices; use a multiple of {devices}.')


def build_task(config: ml_collections.ConfigDict) -> tasks.Task:
  """The model family's task; a setting it rejects (e.g. an unknown loss) is a ConfigError."""
  try:
    return tasks.build_task(config)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from e


def mesh_devices(config: ml_collections.ConfigDict | None = None) -> list[jax.Device]:
  """Every device of every process; on CPU with `config.cpu_data_parallel` False, the first
  device of each process (a model that runs faster as one device using all cores, see
  gan_aec.cpu_cores)."""
  devices = jax.devices()
  if (config is not None and not config.get('cpu_data_parallel', True)
      and jax.default_backend() == 'cpu'):
    devices = [min((d for d in devices if d.process_index == p), key=lambda d: d.id)
               for p in sorted({d.process_index for d in devices})]
  return devices


def make_mesh(config: ml_collections.ConfigDict | None = None) -> jax.sharding.Mesh:
  """One `data` axis over `mesh_devices(config)` (every device of every process by default)."""
  devices = mesh_devices(config)
  return jax.make_mesh((len(devices),), ('data',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def jit_steps(task: tasks.Task, mesh: jax.sharding.Mesh):
  """The task's steps jitted for the mesh: state replicated, batch sharded over `data`.

  Returns (train_fn, eval_fn). train_fn(state, batch, train_rng) runs
  task.train_step(state, batch, fold_in(train_rng, state.step)) and donates the old state;
  eval_fn(state, batch, rng) is task.eval_step.
  """
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))

  # The steps see the mesh (jax.sharding.get_abstract_mesh()): micro-batching splits each
  # device's shard of the batch, not the global batch (gan_aec.microbatching).
  def train_fn(state, batch, rng):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return task.train_step(state, batch, jax.random.fold_in(rng, state.step))

  def eval_fn(state, batch, rng):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return task.eval_step(state, batch, rng)

  train_fn = jax.jit(train_fn, in_shardings=(replicated, batch_sharding, replicated),
                     out_shardings=(replicated, replicated), donate_argnums=0)
  eval_fn = jax.jit(eval_fn, in_shardings=(replicated, batch_sharding, replicated),
                    out_shardings=replicated)
  return train_fn, eval_fn


def to_host(tree: Any) -> Any:
  """Replicated arrays -> numpy on this process. Every process holds a full copy of a replicated
  array, but in a multi-process run not all of its shards are addressable here, so
  jax.device_get would fail; one local copy is the value."""
  return jax.tree.map(
      lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def _evaluate(eval_fn, state, split: splits.Split, config, rng, batch_sharding,
              value_range) -> dict:
  wait = cpu_cores.wait_for_each_step(batch_sharding.mesh)
  totals = None
  for i, batch in enumerate(input_pipeline.eval_batches(
      split, config.eval_batch_size, process_index=jax.process_index(),
      process_count=jax.process_count(), value_range=value_range)):
    sums = eval_fn(state, global_batch(batch, batch_sharding), jax.random.fold_in(rng, i))
    if wait:
      jax.block_until_ready(sums)
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  totals = to_host(totals)
  count = totals.pop('count')
  return {f'eval_{k}': float(v) / float(count) for k, v in totals.items()}


def _check_finite(step: int, metrics: dict[str, float], last_checkpoint: int | None,
                  checkpoint_dir: str) -> None:
  bad = [k for k, v in metrics.items() if not math.isfinite(v)]
  if bad:
    where = (f'the last good checkpoint is step {last_checkpoint} in {checkpoint_dir}'
             if last_checkpoint is not None else 'no checkpoint was written yet')
    raise errors.NonFiniteError(
        f'Non-finite {", ".join(bad)} at step {step} ({metrics}); stopped without saving this '
        f'state; {where}. Lower the learning rate or check the data.')


def sample_metrics_rng(seed: int) -> jax.Array:
  """The key of the samples scored at every evaluation: the same latents each time, and the
  same ones `gan_aec.evaluate` scores, so its numbers match the training log's."""
  return jax.random.fold_in(jax.random.key(seed), _SAMPLE_METRICS_STREAM)


def _sample_quality(config, task: tasks.Task,
                    test: splits.Split) -> sample_quality.SampleQuality | None:
  """The sample-metric scorer when config.sample_metrics.extractor is set (else None)."""
  if not config.get('sample_metrics') or not config.sample_metrics.extractor:
    return None
  if task.sample_images is None:
    raise errors.ConfigError(f'config.sample_metrics.extractor is set, but {config.model} does '
                             'not generate samples; unset it.')
  return sample_quality.SampleQuality.for_run(config, test)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains config.model to config.num_train_steps in workdir (resuming); returns final eval metrics.

  Raises:
    errors.UserError subclasses for what a user can fix (bad config, missing data, a workdir of
      another run, a damaged checkpoint, a non-finite loss), before anything is written where
      possible; preemption.Preempted after saving a checkpoint when SIGTERM or SIGINT arrived.
  """
  validate_config(config)
  task = build_task(config)
  saved_config = run_workdir.saved_config(workdir)
  allowed_changes = run_workdir.check_resume(config, workdir, saved_config)  # Nothing written yet.
  is_writer = jax.process_index() == 0

  data = datasets.load(config)
  run_workdir.check_data_source(config, workdir, saved_config, data.source)
  with config.unlocked():
    config.dataset.source = data.source
  quality = _sample_quality(config, task, data.test)

  mesh = make_mesh(config)
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))

  try:
    train_batches = input_pipeline.TrainBatches(
        data.train, config.batch_size, config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), value_range=task.image_range)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from e
  root = jax.random.key(config.seed)
  init_rng, train_rng, eval_rng = (jax.random.fold_in(root, s)
                                   for s in (_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM))

  # Jitted: one compile instead of one per initializer op (seconds saved on every start).
  state = jax.jit(task.create_state, out_shardings=replicated)(init_rng, train_batches.get(0))
  os.makedirs(workdir, exist_ok=True)
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)
  best = checkpointing.BestCheckpointer(workdir) if quality else None
  start_step = checkpointer.latest_step() or 0
  if start_step:
    state = checkpointer.restore(checkpointing.abstract_like(state))
    logging.info('Resumed from %s at step %d.', checkpointer.directory, start_step)
  total = config.num_train_steps
  if start_step >= total:
    logging.info('The run in %s is already at step %d of %d; nothing to do.', workdir,
                 start_step, total)
    checkpointer.close()
    if best:
      best.close()
    return {}

  if is_writer and (allowed_changes or saved_config is None):
    run_workdir.write_config(config, workdir)
  logger = metric_logging.MetricLogger(workdir, is_writer=is_writer,
                                       resume_step=start_step)
  logger.write_run_start(start_step, {
      'model': config.model, 'dataset.name': config.dataset.name,
      'dataset.source': data.source, 'train_examples': len(data.train),
      'test_examples': len(data.test), 'batch_size': config.batch_size,
      'devices': mesh.size, 'processes': jax.process_count(),
      **({'config_changes': {k: list(v) for k, v in allowed_changes.items()}}
         if allowed_changes else {})})

  train_fn, eval_fn = jit_steps(task, mesh)

  figures_dir = os.path.join(workdir, 'figures')
  eval_metrics: dict[str, float] = {}
  last_saved = start_step or None
  logging.info('Training %s from step %d to %d on %d device(s), %s %s (%d train images).',
               config.model, start_step, total, mesh.size, data.source,
               config.dataset.name, len(data.train))

  sample_rng = sample_metrics_rng(config.seed)

  def evaluate(step: int, final: bool) -> dict[str, float]:
    metrics = _evaluate(eval_fn, state, data.test, config, eval_rng, batch_sharding,
                        task.image_range)
    host_state = to_host(state) if quality or is_writer else None
    if quality:  # Every process scores the same samples, so all agree on saving the best.
      scores = quality.evaluate(task.sample_images(host_state, sample_rng, quality.num_samples))
      metrics.update({f'eval_{k}': float(scores[k]) for k in sample_quality.SCALARS
                      if k in scores})
      if best.offer(step, state, scores['fid']):
        logging.info('step %d: best FID so far (%.3f); saved to %s.', step, scores['fid'],
                     best.directory)
    logger.write_scalars(step, metrics)
    logging.info('step %d eval: %s', step, ' '.join(f'{k}={v:.4f}' for k, v in metrics.items()))
    if is_writer:
      task.write_figures(host_state, data.test, figures_dir, step, final)
    return metrics

  if start_step == 0 and config.eval_at_start:
    evaluate(0, final=False)  # The untrained baseline, so every curve starts at step 0.
  progress = metric_logging.Progress(start_step, total, config.batch_size)
  wait_for_each_step = cpu_cores.wait_for_each_step(mesh)
  try:
    with preemption.StopRequests() as stop:
      for step in range(start_step, total):
        batch = global_batch(train_batches.get(step), batch_sharding)
        state, metrics = train_fn(state, batch, train_rng)
        if wait_for_each_step:  # Several CPU devices must not run different steps at once.
          jax.block_until_ready(metrics)
        done = step + 1
        final = done == total
        signum = stop.requested(done)
        saving = final or signum is not None or checkpointer.should_save(done)
        if done % config.log_every_steps == 0 or saving:
          values = {k: float(v) for k, v in to_host(metrics).items()}
          # Checked at every save too, so a diverged state is never checkpointed.
          _check_finite(done, values, last_saved, checkpointer.directory)
        if done % config.log_every_steps == 0 or final:
          rates = progress.update(done)
          logger.write_scalars(done, {**values, 'steps_per_s': rates['steps_per_s'],
                                      'images_per_s': rates['images_per_s']})
          metric_logging.log_progress(done, total, values, rates)
        if done % config.eval_every_steps == 0 or final:
          eval_metrics = evaluate(done, final)
        elif task.write_samples and done % config.sample_every_steps == 0 and is_writer:
          task.write_samples(to_host(state), figures_dir, done)
        if saving and checkpointer.save(done, state, force=final or signum is not None):
          last_saved = done
        if signum is not None:
          raise preemption.Preempted(signum, done, checkpointer.directory)
  finally:  # Whatever stops the loop, saves already started are committed before we leave.
    checkpointer.close()
    if best:
      best.close()
    logger.close()
  logging.info('Finished at step %d. Outputs in %s.', total, workdir)
  return eval_metrics
