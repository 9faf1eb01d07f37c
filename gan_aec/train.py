"""The training loop every model shares: data, sharding, steps, evaluation, logging, checkpoints.

    train_and_evaluate(config, workdir)

Per step the loop puts this process's slice of the global batch on the devices, calls the model
family's jitted `train_step(state, batch, rng)` (rng = fold_in(train key, step)), and every
`log_every_steps` writes metrics and progress, every `eval_every_steps` (and at the end) evaluates
on the test split and writes figures, and every `checkpoint_every_steps` (and at the end) saves.
Re-running with the same workdir resumes from the latest checkpoint; a finished run does nothing.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from absl import logging
import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from gan_aec import checkpointing, datasets, input_pipeline, metric_logging, splits, tasks

# Streams derived from config.seed; each step folds its step number into the train stream.
_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM = 0, 1, 2


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Stops a bad config with a message before any data is read or anything is compiled."""
  if config.model not in tasks.REGISTRY:
    raise ValueError(f'Unknown model {config.model!r}; choose one of {sorted(tasks.REGISTRY)}.')
  if config.dataset.name not in datasets.DATASETS:
    raise ValueError(f'Unknown dataset.name {config.dataset.name!r}; choose one of '
                     f'{sorted(datasets.DATASETS)}.')
  image_size = config.get('image_size', 28)
  sizes = datasets.DATASETS[config.dataset.name][1]
  if image_size not in sizes:
    raise ValueError(f'image_size={image_size} is not available for {config.dataset.name} '
                     f'(available: {", ".join(map(str, sizes))}).')
  for field in ('batch_size', 'num_train_steps', 'log_every_steps', 'eval_every_steps',
                'checkpoint_every_steps', 'eval_batch_size'):
    if int(config[field]) <= 0:
      raise ValueError(f'config.{field} must be a positive integer, got {config[field]}.')
  devices = jax.device_count()
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] % devices:
      raise ValueError(f'config.{field}={config[field]} is not divisible by the {devices} devices; '
                       f'use a multiple of {devices}.')


def make_mesh() -> jax.sharding.Mesh:
  """One `data` axis over every device of every process."""
  return jax.make_mesh((jax.device_count(),), ('data',),
                       axis_types=(jax.sharding.AxisType.Auto,))


def jit_steps(task: tasks.Task, mesh: jax.sharding.Mesh):
  """The task's steps jitted for the mesh: state replicated, batch sharded over `data`.

  Returns (train_fn, eval_fn). train_fn(state, batch, train_rng) runs
  task.train_step(state, batch, fold_in(train_rng, state.step)) and donates the old state;
  eval_fn(state, batch, rng) is task.eval_step.
  """
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))

  def train_fn(state, batch, rng):
    return task.train_step(state, batch, jax.random.fold_in(rng, state.step))

  train_fn = jax.jit(train_fn, in_shardings=(replicated, batch_sharding, replicated),
                     out_shardings=(replicated, replicated), donate_argnums=0)
  eval_fn = jax.jit(task.eval_step, in_shardings=(replicated, batch_sharding, replicated),
                    out_shardings=replicated)
  return train_fn, eval_fn


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def _evaluate(eval_fn, state, split: splits.Split, config, rng, batch_sharding,
              value_range) -> dict:
  totals = None
  for i, batch in enumerate(input_pipeline.eval_batches(
      split, config.eval_batch_size, process_index=jax.process_index(),
      process_count=jax.process_count(), value_range=value_range)):
    sums = eval_fn(state, global_batch(batch, batch_sharding), jax.random.fold_in(rng, i))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  totals = jax.device_get(totals)
  count = totals.pop('count')
  return {f'eval_{k}': float(v) / float(count) for k, v in totals.items()}


def _check_finite(step: int, metrics: dict[str, float], last_checkpoint: int | None) -> None:
  bad = [k for k, v in metrics.items() if not math.isfinite(v)]
  if bad:
    where = (f'the last good checkpoint is step {last_checkpoint}' if last_checkpoint is not None
             else 'no checkpoint was written yet')
    raise FloatingPointError(
        f'Non-finite {", ".join(bad)} at step {step} ({metrics}); stopping without saving this '
        f'state; {where}. Lower the learning rate or check the data.')


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  with open(os.path.join(workdir, 'config.json'), 'w', encoding='utf-8') as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True) + '\n')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains config.model to config.num_train_steps in workdir (resuming); returns final eval metrics."""
  validate_config(config)
  is_writer = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)

  data = datasets.load(config)
  with config.unlocked():
    config.dataset.source = data.source
  task = tasks.build_task(config)

  mesh = make_mesh()
  replicated = NamedSharding(mesh, P())
  batch_sharding = NamedSharding(mesh, P('data'))

  train_batches = input_pipeline.TrainBatches(
      data.train, config.batch_size, config.seed, process_index=jax.process_index(),
      process_count=jax.process_count(), value_range=task.image_range)
  root = jax.random.key(config.seed)
  init_rng, train_rng, eval_rng = (jax.random.fold_in(root, s)
                                   for s in (_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM))

  state = jax.device_put(task.create_state(init_rng, train_batches.get(0)), replicated)
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)
  start_step = checkpointer.latest_step() or 0
  if start_step:
    state = checkpointer.restore(checkpointing.abstract_like(state))
    logging.info('Resumed from %s at step %d.', checkpointer.directory, start_step)
  total = config.num_train_steps
  if start_step >= total:
    logging.info('The run in %s is already at step %d of %d; nothing to do.', workdir,
                 start_step, total)
    checkpointer.close()
    return {}

  if is_writer and not os.path.exists(os.path.join(workdir, 'config.json')):
    _write_config(config, workdir)
  logger = metric_logging.MetricLogger(workdir, is_writer=is_writer)
  logger.write_run_start(start_step, {
      'model': config.model, 'dataset.name': config.dataset.name,
      'dataset.source': data.source, 'train_examples': len(data.train),
      'test_examples': len(data.test), 'batch_size': config.batch_size,
      'devices': jax.device_count(), 'processes': jax.process_count()})

  train_fn, eval_fn = jit_steps(task, mesh)

  figures_dir = os.path.join(workdir, 'figures')
  eval_metrics: dict[str, float] = {}
  last_saved = start_step or None
  logging.info('Training %s from step %d to %d on %d device(s), %s %s (%d train images).',
               config.model, start_step, total, jax.device_count(), data.source,
               config.dataset.name, len(data.train))
  def evaluate(step: int, final: bool) -> dict[str, float]:
    metrics = _evaluate(eval_fn, state, data.test, config, eval_rng, batch_sharding,
                        task.image_range)
    logger.write_scalars(step, metrics)
    logging.info('step %d eval: %s', step, ' '.join(f'{k}={v:.4f}' for k, v in metrics.items()))
    if is_writer:
      task.write_figures(jax.device_get(state), data.test, figures_dir, step, final)
    return metrics

  if start_step == 0 and config.eval_at_start:
    evaluate(0, final=False)  # The untrained baseline, so every curve starts at step 0.
  progress = metric_logging.Progress(start_step, total, config.batch_size)
  for step in range(start_step, total):
    batch = global_batch(train_batches.get(step), batch_sharding)
    state, metrics = train_fn(state, batch, train_rng)
    done = step + 1
    final = done == total
    if done % config.log_every_steps == 0 or final:
      values = {k: float(v) for k, v in jax.device_get(metrics).items()}
      _check_finite(done, values, last_saved)
      rates = progress.update(done)
      logger.write_scalars(done, {**values, 'steps_per_s': rates['steps_per_s'],
                                  'images_per_s': rates['images_per_s']})
      metric_logging.log_progress(done, total, values, rates)
    if done % config.eval_every_steps == 0 or final:
      eval_metrics = evaluate(done, final)
    elif task.write_samples and done % config.sample_every_steps == 0 and is_writer:
      task.write_samples(jax.device_get(state), figures_dir, done)
    if checkpointer.save(done, state, force=final):
      last_saved = done
  checkpointer.close()
  logger.close()
  logging.info('Finished at step %d. Outputs in %s.', total, workdir)
  return eval_metrics
