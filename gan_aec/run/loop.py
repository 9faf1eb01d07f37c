"""The training loop every model shares: set-up, evaluation and the step loop, as named functions.

    train_and_evaluate(config, workdir)

`set_up` checks the config and the workdir, loads the data, builds the model family's Task, the
mesh, the jitted steps, the checkpointer and the logger, and creates or restores the state. The
step loop puts this process's slice of each global batch on the devices and calls the family's
jitted `train_step(state, batch, rng)` (rng = fold_in(train key, step)); every `log_every_steps`
it writes metrics and progress, every `eval_every_steps` (and at the end) `evaluate` scores the
test split and writes figures, and every `checkpoint_every_steps` (and at the end) it saves.
Re-running with the same workdir resumes from the latest checkpoint; a finished run does nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable

from absl import logging
import jax
import ml_collections

from gan_aec import data as datasets
from gan_aec.data import batching
from gan_aec.data.splits import Data
from gan_aec.errors import ConfigError, NonFiniteError
from gan_aec.run import (checkpointing, config as config_lib, cpu_devices, evaluation,
                         metric_logging, preemption, sample_quality, sharding, tasks)
from gan_aec.run import workdir as run_workdir

# Streams derived from config.seed; each step folds its step number into the train stream.
_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Run:
  """What set_up prepares once for a run; nothing here changes while it trains."""
  config: ml_collections.ConfigDict
  workdir: str
  task: tasks.Task
  data: Data
  mesh: jax.sharding.Mesh
  train_batches: batching.TrainBatches
  train_fn: Callable
  eval_fn: Callable
  train_rng: jax.Array
  eval_rng: jax.Array
  quality: sample_quality.SampleQuality | None
  checkpointer: checkpointing.Checkpointer
  best: checkpointing.BestCheckpointer | None
  logger: metric_logging.MetricLogger
  start_step: int
  is_writer: bool

  @property
  def figures_dir(self) -> str:
    return os.path.join(self.workdir, 'figures')

  def close(self) -> None:
    """Waits for the saves in flight to commit, and flushes the logs."""
    self.checkpointer.close()
    if self.best:
      self.best.close()
    self.logger.close()


def _sample_quality(config: ml_collections.ConfigDict, task: tasks.Task,
                    data: Data) -> sample_quality.SampleQuality | None:
  """The sample-metric scorer when config.sample_metrics.extractor is set (else None)."""
  if not config.get('sample_metrics') or not config.sample_metrics.extractor:
    return None
  if task.sample_images is None:
    raise ConfigError(f'config.sample_metrics.extractor is set, but {config.model} does not '
                      'generate samples; unset it.')
  return sample_quality.SampleQuality.for_run(config, data.test)


def set_up(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, Any] | None:
  """Everything before the first step: (the Run, the state to train from); None when the run in
  workdir is already finished. Nothing is written before the config, the workdir and the data
  have been checked."""
  task = tasks.build_task(config)
  mesh = sharding.make_mesh(config)
  config_lib.validate(config, mesh.size)
  saved_config = run_workdir.saved_config(workdir)
  allowed_changes = run_workdir.check_resume(config, workdir, saved_config)
  data = datasets.load(config.dataset, config_lib.image_size(config))
  run_workdir.check_data_source(config, workdir, saved_config, data.source)
  with config.unlocked():
    config.dataset.source = data.source
  quality = _sample_quality(config, task, data)
  try:
    train_batches = batching.TrainBatches(
        data.train, config.batch_size, config.seed, process_index=jax.process_index(),
        process_count=jax.process_count(), value_range=task.image_range)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  root = jax.random.key(config.seed)
  init_rng, train_rng, eval_rng = (jax.random.fold_in(root, s)
                                   for s in (_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM))

  # Jitted: one compile instead of one per initializer op (seconds saved on every start).
  state = jax.jit(task.create_state, out_shardings=sharding.replicated(mesh))(
      init_rng, train_batches.get(0))
  os.makedirs(workdir, exist_ok=True)
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)
  best = checkpointing.BestCheckpointer(workdir) if quality else None
  start_step = checkpointer.latest_step() or 0
  if start_step:
    state = checkpointer.restore(checkpointing.abstract_like(state))
    logging.info('Resumed from %s at step %d.', checkpointer.directory, start_step)
  if start_step >= config.num_train_steps:
    logging.info('The run in %s is already at step %d of %d; nothing to do.', workdir,
                 start_step, config.num_train_steps)
    checkpointer.close()
    if best:
      best.close()
    return None

  is_writer = jax.process_index() == 0
  if is_writer and (allowed_changes or saved_config is None):
    run_workdir.write_config(config, workdir)
  logger = metric_logging.MetricLogger(workdir, is_writer=is_writer, resume_step=start_step)
  logger.write_run_start(start_step, {
      'model': config.model, 'dataset.name': config.dataset.name,
      'dataset.source': data.source, 'train_examples': len(data.train),
      'test_examples': len(data.test), 'batch_size': config.batch_size,
      'devices': mesh.size, 'processes': jax.process_count(),
      **({'config_changes': {k: list(v) for k, v in allowed_changes.items()}}
         if allowed_changes else {})})
  train_fn, eval_fn = sharding.jit_steps(task, mesh)
  run = Run(config=config, workdir=workdir, task=task, data=data, mesh=mesh,
            train_batches=train_batches, train_fn=train_fn, eval_fn=eval_fn, train_rng=train_rng,
            eval_rng=eval_rng, quality=quality, checkpointer=checkpointer, best=best,
            logger=logger, start_step=start_step, is_writer=is_writer)
  logging.info('Training %s from step %d to %d on %d device(s), %s %s (%d train images).',
               config.model, start_step, config.num_train_steps, mesh.size, data.source,
               config.dataset.name, len(data.train))
  return run, state


def evaluate(run: Run, state: Any, step: int, final: bool) -> dict[str, float]:
  """Scores `state` on the test split (and its samples, with an extractor), logs the metrics,
  keeps the best-FID state, and writes the figures (process 0)."""
  metrics = evaluation.evaluate_split(run.eval_fn, state, run.data.test,
                                      run.config.eval_batch_size, run.eval_rng,
                                      sharding.batch_sharding(run.mesh), run.task.image_range)
  host_state = sharding.to_host(state) if run.quality or run.is_writer else None
  if run.quality:  # Every process scores the same samples, so all agree on saving the best.
    samples = run.task.sample_images(host_state, evaluation.sample_metrics_rng(run.config.seed),
                                     run.quality.num_samples)
    scores = run.quality.evaluate(samples)
    metrics.update({f'eval_{k}': float(scores[k]) for k in sample_quality.SCALARS if k in scores})
    if run.best.offer(step, state, scores['fid']):
      logging.info('step %d: best FID so far (%.3f); saved to %s.', step, scores['fid'],
                   run.best.directory)
  run.logger.write_scalars(step, metrics)
  logging.info('step %d eval: %s', step, ' '.join(f'{k}={v:.4f}' for k, v in metrics.items()))
  if run.is_writer:
    run.task.write_figures(host_state, run.data.test, run.figures_dir, step, final)
  return metrics


def check_finite(step: int, metrics: dict[str, float], last_checkpoint: int | None,
                 checkpoint_dir: str) -> None:
  """NonFiniteError naming the bad metrics, the step and the last good checkpoint."""
  bad = [k for k, v in metrics.items() if not math.isfinite(v)]
  if bad:
    where = (f'the last good checkpoint is step {last_checkpoint} in {checkpoint_dir}'
             if last_checkpoint is not None else 'no checkpoint was written yet')
    raise NonFiniteError(
        f'Non-finite {", ".join(bad)} at step {step} ({metrics}); stopped without saving this '
        f'state; {where}. Lower the learning rate or check the data.')


def train(run: Run, state: Any) -> dict[str, float]:
  """The step loop from run.start_step to config.num_train_steps; returns the last evaluation.

  Raises:
    NonFiniteError: a logged metric is NaN or Inf (checked at every log and save; that state is
      never saved).
    preemption.Preempted: after saving, when SIGTERM or SIGINT arrived.
  """
  config, task = run.config, run.task
  total = config.num_train_steps
  data_sharding = sharding.batch_sharding(run.mesh)
  eval_metrics: dict[str, float] = {}
  last_saved = run.start_step or None
  progress = metric_logging.Progress(run.start_step, total, config.batch_size)
  wait_for_each_step = cpu_devices.wait_for_each_step(run.mesh)
  with preemption.StopRequests() as stop:
    for step in range(run.start_step, total):
      batch = sharding.global_batch(run.train_batches.get(step), data_sharding)
      state, metrics = run.train_fn(state, batch, run.train_rng)
      if wait_for_each_step:  # Several CPU devices must not run different steps at once.
        jax.block_until_ready(metrics)
      done = step + 1
      final = done == total
      signum = stop.requested(done)
      saving = final or signum is not None or run.checkpointer.should_save(done)
      if done % config.log_every_steps == 0 or saving:
        values = {k: float(v) for k, v in sharding.to_host(metrics).items()}
        # Checked at every save too, so a diverged state is never checkpointed.
        check_finite(done, values, last_saved, run.checkpointer.directory)
      if done % config.log_every_steps == 0 or final:
        rates = progress.update(done)
        run.logger.write_scalars(done, {**values, 'steps_per_s': rates['steps_per_s'],
                                        'images_per_s': rates['images_per_s']})
        metric_logging.log_progress(done, total, values, rates)
      if done % config.eval_every_steps == 0 or final:
        eval_metrics = evaluate(run, state, done, final)
      elif (task.write_samples and run.is_writer and task.sample_every_steps
            and done % task.sample_every_steps == 0):
        task.write_samples(sharding.to_host(state), run.figures_dir, done)
      if saving and run.checkpointer.save(done, state, force=final or signum is not None):
        last_saved = done
      if signum is not None:
        raise preemption.Preempted(signum, done, run.checkpointer.directory)
  return eval_metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains config.model to config.num_train_steps in workdir (resuming); returns final eval metrics.

  Raises:
    gan_aec.errors.UserError subclasses for what a user can fix (bad config, missing data, a
      workdir of another run, a damaged checkpoint, a non-finite loss), before anything is
      written where possible; preemption.Preempted after saving a checkpoint when SIGTERM or
      SIGINT arrived.
  """
  prepared = set_up(config, workdir)
  if prepared is None:
    return {}
  run, state = prepared
  try:  # Whatever stops the loop, saves already started are committed before we leave.
    if run.start_step == 0 and config.eval_at_start:
      evaluate(run, state, 0, final=False)  # The untrained baseline: every curve starts at 0.
    metrics = train(run, state)
  finally:
    run.close()
  logging.info('Finished at step %d. Outputs in %s.', config.num_train_steps, workdir)
  return metrics
