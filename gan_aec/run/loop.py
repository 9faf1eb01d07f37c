"""The training loop every model shares: set-up, evaluation and the step loop, as named functions.

    train_and_evaluate(config, workdir)

`set_up` checks the config and the workdir, loads the data, builds the model family's Task, the
mesh, the jitted steps, the checkpointer and the logger, and creates or restores the state. The
step loop puts each global batch on the devices and calls the family's jitted
`train_step(state, batch, rng)` (rng = fold_in(train key, step)); every `log_every_steps` it writes
metrics and progress, every `eval_every_steps` (and at the end) `evaluate` scores the test split
and writes figures, and every `checkpoint_every_steps` (and at the end) it saves. Re-running with
the same workdir resumes from the latest checkpoint; a finished run does nothing.

With `config.num_seeds` > 1 or a `config.sweep` the run trains several replicas in one program
(gan_aec.run.replicas): the state has a leading replica axis, replica r draws its batches and
random streams from its own seed exactly as a one-model run with that seed would, metrics are
logged as mean, std and per-replica values, and each replica's figures go to
WORKDIR/replicas/<replica>/figures/.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

from absl import logging
import jax
import ml_collections
import numpy as np

from gan_aec import data as datasets
from gan_aec.data import batching
from gan_aec.data.splits import Data
from gan_aec.errors import ConfigError, NonFiniteError
from gan_aec.run import (checkpointing, config as config_lib, cpu_devices, evaluation,
                         metric_logging, preemption, replicas as replicas_lib, sample_quality,
                         sharding, tasks)
from gan_aec.run import workdir as run_workdir

# Streams derived from each seed; each step folds its step number into the train stream.
_INIT_STREAM, _TRAIN_STREAM, _EVAL_STREAM = 0, 1, 2


def stream_keys(seeds: tuple[int, ...], stream: int, mesh: jax.sharding.Mesh | None) -> jax.Array:
  """fold_in(key(seed), stream) of each seed: one key; with a mesh, [R] keys split over its
  replica axis (stacked replicas)."""
  keys = [jax.random.fold_in(jax.random.key(seed), stream) for seed in seeds]
  if mesh is None:
    return keys[0]
  return sharding.put_keys(jax.numpy.stack(keys), sharding.replica_sharding(mesh))


@dataclasses.dataclass(frozen=True)
class Run:
  """What set_up prepares once for a run; nothing here changes while it trains."""
  config: ml_collections.ConfigDict
  workdir: str
  task: tasks.Task
  data: Data
  mesh: jax.sharding.Mesh
  replicas: replicas_lib.Replicas
  train_batches: tuple[batching.TrainBatches, ...]  # One per replica (per seed when stacked).
  train_fn: Callable
  eval_fn: Callable
  train_rngs: jax.Array  # One key, or [R] keys.
  eval_rngs: jax.Array
  quality: sample_quality.SampleQuality | None
  checkpointer: checkpointing.Checkpointer
  best: tuple[checkpointing.BestCheckpointer, ...]  # One per replica with an extractor, else ().
  logger: metric_logging.MetricLogger
  start_step: int
  is_writer: bool

  def replica_dir(self, r: int) -> str:
    """Where replica r's files go: the workdir itself for a one-model run."""
    if not self.replicas.stacked:
      return self.workdir
    return os.path.join(self.workdir, 'replicas', self.replicas.name(r))

  def figures_dir(self, r: int = 0) -> str:
    return os.path.join(self.replica_dir(r), 'figures')

  def close(self) -> None:
    """Waits for the saves in flight to commit, and flushes the logs."""
    self.checkpointer.close()
    for best in self.best:
      best.close()
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


def _create_state(task: tasks.Task, replicas: replicas_lib.Replicas, mesh: jax.sharding.Mesh,
                  example_batch: dict[str, np.ndarray]) -> Any:
  """The step-0 state: the task's create_state (vmapped over the replicas' init keys), with each
  replica's swept optimizer hyperparameters set."""
  # Jitted: one compile instead of one per initializer op (seconds saved on every start).
  if not replicas.stacked:
    return jax.jit(task.create_state, out_shardings=sharding.replicated(mesh))(
        stream_keys(replicas.seeds, _INIT_STREAM, None), example_batch)
  swept = {name: np.asarray([point[name] for point in replicas.points], np.float32)
           for name in replicas_lib.OPTIMIZER_HYPERPARAMETERS if name in replicas.points[0]}

  def create(init_rngs, batch, values):
    states = jax.vmap(task.create_state, in_axes=(0, None))(init_rngs, batch)
    for name, value in values.items():
      states = replicas_lib.set_optimizer_hyperparameter(states, name, value)
    return states

  stacked = sharding.replica_sharding(mesh)
  return jax.jit(create, out_shardings=stacked)(
      stream_keys(replicas.seeds, _INIT_STREAM, mesh), example_batch,
      {k: sharding.put_global(v, stacked) for k, v in swept.items()})


def set_up(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, Any] | None:
  """Everything before the first step: (the Run, the state to train from); None when the run in
  workdir is already finished. Nothing is written before the config, the workdir and the data
  have been checked."""
  task = tasks.build_task(config)
  replicas = replicas_lib.from_config(config, task.step_hyperparameters)
  mesh = sharding.make_mesh(config, len(replicas))
  config_lib.validate(config, mesh.shape['data'])
  saved_config = run_workdir.saved_config(workdir)
  allowed_changes = run_workdir.check_resume(config, workdir, saved_config)
  data = datasets.load(config.dataset, config_lib.image_size(config))
  run_workdir.check_data_source(config, workdir, saved_config, data.source)
  with config.unlocked():
    config.dataset.source = data.source
  quality = _sample_quality(config, task, data)
  # One model: each process takes its slice of the global batch. Replicas: every process builds
  # the whole stacked batch and transfers its own devices' pieces (sharding.put_global).
  process = ({'process_index': jax.process_index(), 'process_count': jax.process_count()}
             if not replicas.stacked else {})
  try:
    train_batches = tuple(
        batching.TrainBatches(data.train, config.batch_size, seed, value_range=task.image_range,
                              **process) for seed in replicas.seeds)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  state = _create_state(task, replicas, mesh, train_batches[0].get(0))

  state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
  run_workdir.check_usable(workdir, state_bytes,
                           checkpoints_kept=checkpointing.MAX_TO_KEEP + (1 if quality else 0))
  checkpointer = checkpointing.Checkpointer(workdir, config.checkpoint_every_steps)
  best = ()
  if quality:
    best = ((checkpointing.BestCheckpointer(workdir),) if not replicas.stacked else tuple(
        checkpointing.BestCheckpointer(workdir, subdirectory=replicas.name(r))
        for r in range(len(replicas))))
  start_step = checkpointer.latest_step() or 0
  if start_step:
    state = checkpointer.restore(checkpointing.abstract_like(state))
    logging.info('Resumed from %s at step %d.', checkpointer.directory, start_step)
  if start_step >= config.num_train_steps:
    logging.info('The run in %s is already at step %d of %d; nothing to do.', workdir,
                 start_step, config.num_train_steps)
    checkpointer.close()
    for b in best:
      b.close()
    return None

  is_writer = jax.process_index() == 0
  if is_writer and (allowed_changes or saved_config is None):
    run_workdir.write_config(config, workdir)
  logger = metric_logging.MetricLogger(workdir, is_writer=is_writer, resume_step=start_step)
  logger.write_hparams(json.loads(config.to_json_best_effort()))
  logger.write_run_start(start_step, {
      'model': config.model, 'dataset.name': config.dataset.name,
      'dataset.source': data.source, 'train_examples': len(data.train),
      'test_examples': len(data.test), 'batch_size': config.batch_size,
      'devices': mesh.size, 'processes': jax.process_count(),
      **({'replicas': replicas.labels()} if replicas.stacked else {}),
      **({'config_changes': {k: list(v) for k, v in allowed_changes.items()}}
         if allowed_changes else {})})
  train_fn, eval_fn = (sharding.jit_replica_steps(task, mesh) if replicas.stacked
                       else sharding.jit_steps(task, mesh))
  stacked_mesh = mesh if replicas.stacked else None
  run = Run(config=config, workdir=workdir, task=task, data=data, mesh=mesh, replicas=replicas,
            train_batches=train_batches, train_fn=train_fn, eval_fn=eval_fn,
            train_rngs=stream_keys(replicas.seeds, _TRAIN_STREAM, stacked_mesh),
            eval_rngs=stream_keys(replicas.seeds, _EVAL_STREAM, stacked_mesh),
            quality=quality, checkpointer=checkpointer, best=best, logger=logger,
            start_step=start_step, is_writer=is_writer)
  logging.info('Training %s from step %d to %d on %d device(s)%s, %s %s (%d train images).',
               config.model, start_step, config.num_train_steps, mesh.size,
               f', {len(replicas)} replicas' if replicas.stacked else '', data.source,
               config.dataset.name, len(data.train))
  return run, state


def train_batch(run: Run, step: int) -> dict[str, jax.Array]:
  """Step's global batch on the devices: [B, ...], or [R, B, ...] for stacked replicas."""
  if not run.replicas.stacked:
    return sharding.global_batch(run.train_batches[0].get(step), sharding.batch_sharding(run.mesh))
  per_seed = {}
  for batches in run.train_batches:  # Replicas of one seed (a sweep) share its batches.
    per_seed.setdefault(batches.seed, batches.get(step))
  stacked = {key: np.stack([per_seed[seed][key] for seed in run.replicas.seeds])
             for key in per_seed[run.replicas.seeds[0]]}
  target = sharding.replica_batch_sharding(run.mesh)
  return {key: sharding.put_global(value, target) for key, value in stacked.items()}


def per_replica(run: Run, metrics: dict[str, Any]) -> list[dict[str, float]]:
  """Device metrics -> one {name: float} per replica (a list of one for a one-model run)."""
  if not run.replicas.stacked:
    return [{k: float(v) for k, v in sharding.to_host(metrics).items()}]
  host = sharding.gather_to_host(metrics)
  return [{k: float(np.asarray(v)[r]) for k, v in host.items()} for r in range(len(run.replicas))]


def combine(run: Run, values: list[dict[str, float]]) -> dict[str, Any]:
  """What is logged: a one-model run's values, or each metric's mean, std and per-replica list."""
  if not run.replicas.stacked:
    return dict(values[0])
  combined = {}
  for name in values[0]:
    combined.update(replicas_lib.summarize(name, [v[name] for v in values]))
  return combined


def check_finite(run: Run, step: int, values: list[dict[str, float]],
                 last_checkpoint: int | None) -> None:
  """NonFiniteError naming the bad metrics, the replica, the step and the last good checkpoint."""
  for r, metrics in enumerate(values):
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if not bad:
      continue
    checkpoint_dir = run.checkpointer.directory
    where = (f'the last good checkpoint is step {last_checkpoint} in {checkpoint_dir}'
             if last_checkpoint is not None else 'no checkpoint was written yet')
    replica = ''
    if run.replicas.stacked:
      label = ', '.join(f'{k}={v}' for k, v in run.replicas.labels()[r].items() if k != 'replica')
      replica = f' in replica {r} ({label})'
    raise NonFiniteError(
        f'Non-finite {", ".join(bad)}{replica} at step {step} ({metrics}); stopped without saving '
        f'this state; {where}. Lower the learning rate or check the data.')


def _log(run: Run, step: int, logged: dict[str, Any], what: str) -> None:
  run.logger.write_scalars(step, logged)
  shown = {k: v for k, v in logged.items() if not isinstance(v, list)}
  logging.info('step %d %s: %s', step, what, ' '.join(f'{k}={v:.4f}' for k, v in shown.items()))


def evaluate(run: Run, state: Any, step: int, final: bool) -> dict[str, Any]:
  """Scores `state` on the test split (and its samples, with an extractor), logs the metrics,
  keeps each replica's best-FID state, and writes the figures (process 0)."""
  values = evaluation.evaluate_split(run.eval_fn, state, run.data.test,
                                     run.config.eval_batch_size, run.eval_rngs,
                                     sharding.batch_sharding(run.mesh), run.task.image_range,
                                     num_replicas=len(run.replicas) if run.replicas.stacked else None)
  if not run.replicas.stacked:
    values = [values]
  host_state = _host_state(run, state, needed=bool(run.quality) or run.is_writer)
  for r, seed in enumerate(run.replicas.seeds):
    state_r = replicas_lib.replica(host_state, r) if run.replicas.stacked else host_state
    if run.quality:  # Every process scores the same samples, so all agree on saving the best.
      samples = run.task.sample_images(state_r, evaluation.sample_metrics_rng(seed),
                                       run.quality.num_samples)
      scores = run.quality.evaluate(samples)
      values[r].update({f'eval_{k}': float(scores[k]) for k in sample_quality.SCALARS
                        if k in scores})
      if run.best[r].offer(step, state_r if run.replicas.stacked else state, scores['fid']):
        logging.info('step %d: best FID so far (%.3f); saved to %s.', step, scores['fid'],
                     run.best[r].directory)
    if run.is_writer:
      paths = run.task.write_figures(state_r, run.data.test, run.figures_dir(r), step, final,
                                     seed=seed)
      run.logger.write_images(step, paths, _image_prefix(run, r))
  logged = combine(run, values)
  _log(run, step, logged, 'eval')
  return logged


def _image_prefix(run: Run, r: int) -> str:
  return f'{run.replicas.name(r)}/' if run.replicas.stacked else ''


def _host_state(run: Run, state: Any, needed: bool) -> Any:
  """`state` as numpy arrays on this host when `needed` (else None). Stacked replicas are spread
  over the processes' devices, and gathering them is a collective: every process takes part,
  whether or not it needs the result, or the others wait for it forever."""
  if run.replicas.stacked:
    return sharding.gather_to_host(state) if needed or jax.process_count() > 1 else None
  return sharding.to_host(state) if needed else None


def _write_samples(run: Run, state: Any, step: int) -> None:
  """The sample grids (process 0 writes; every process joins the gather of stacked replicas)."""
  host_state = _host_state(run, state, needed=run.is_writer)
  if not run.is_writer:
    return
  for r, seed in enumerate(run.replicas.seeds):
    state_r = replicas_lib.replica(host_state, r) if run.replicas.stacked else host_state
    paths = run.task.write_samples(state_r, run.figures_dir(r), step, seed=seed)
    run.logger.write_images(step, paths, _image_prefix(run, r))


def compile_train_step(run: Run, state: Any, batch: dict[str, jax.Array],
                       extra: tuple[Any, ...]) -> Callable:
  """The jitted train step, compiled now (with a log line saying so and how long it took)."""
  logging.info('Compiling the train step%s...',
               f' of {len(run.replicas)} replicas' if run.replicas.stacked else '')
  start = time.perf_counter()
  compiled = run.train_fn.lower(state, batch, *extra).compile()
  logging.info('Compiled the train step in %.1f s.', time.perf_counter() - start)
  return compiled


def train(run: Run, state: Any) -> dict[str, Any]:
  """The step loop from run.start_step to config.num_train_steps; returns the last evaluation.

  Raises:
    NonFiniteError: a logged metric is NaN or Inf in any replica (checked at every log and save;
      that state is never saved).
    preemption.Preempted: after saving, when SIGTERM or SIGINT arrived.
  """
  config, task = run.config, run.task
  total = config.num_train_steps
  eval_metrics: dict[str, Any] = {}
  last_saved = run.start_step or None
  progress = metric_logging.Progress(run.start_step, total,
                                     config.batch_size * len(run.replicas))
  wait_for_each_step = cpu_devices.wait_for_each_step(run.mesh)
  step_hyperparameters = None
  if run.replicas.stacked:
    step_hyperparameters = {k: sharding.put_global(v, sharding.replica_sharding(run.mesh))
                            for k, v in run.replicas.step_hyperparameters().items()}
  extra = ((run.train_rngs, step_hyperparameters) if run.replicas.stacked
           else (run.train_rngs,))
  train_fn = None
  with preemption.StopRequests() as stop:
    for step in range(run.start_step, total):
      batch = train_batch(run, step)
      if train_fn is None:
        with progress.excluded():
          train_fn = compile_train_step(run, state, batch, extra)
      state, metrics = train_fn(state, batch, *extra)
      if wait_for_each_step:  # Several CPU devices must not run different steps at once.
        jax.block_until_ready(metrics)
      done = step + 1
      final = done == total
      signum = stop.requested(done)
      saving = final or signum is not None or run.checkpointer.should_save(done)
      if done % config.log_every_steps == 0 or saving:
        values = per_replica(run, metrics)
        # Checked at every save too, so a diverged state is never checkpointed.
        check_finite(run, done, values, last_saved)
      if done % config.log_every_steps == 0 or final:
        rates = progress.update(done)
        logged = combine(run, values)
        run.logger.write_scalars(done, {**logged, 'steps_per_s': rates['steps_per_s'],
                                        'images_per_s': rates['images_per_s']})
        metric_logging.log_progress(
            done, total, {k: v for k, v in logged.items() if not isinstance(v, list)}, rates)
      with progress.excluded():  # Throughput counts training steps only.
        if done % config.eval_every_steps == 0 or final:
          eval_metrics = evaluate(run, state, done, final)
        elif (task.write_samples and task.sample_every_steps
              and done % task.sample_every_steps == 0):
          _write_samples(run, state, done)
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
