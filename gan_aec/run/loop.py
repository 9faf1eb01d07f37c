"""The training loop every model shares: set-up, evaluation and the step loop, as named functions.

    train_and_evaluate(config, workdir)

Every run trains R >= 1 replicas in one program (gan_aec.run.replicas): `config.num_seeds` seeds
times the points of `config.sweep`, replica r drawing its initialisation, batches and random
streams from its own seed exactly as a one-model run with that seed would. A one-model run is
R = 1. The state carries a leading replica axis; the family's pure steps are vmapped over it and
jitted once (gan_aec.run.sharding.jit_steps).

`set_up` (gan_aec.run.startup) checks the config and the workdir, loads the data, builds the model
family's Task, the mesh, the jitted steps, the checkpointer and the logger, and creates or
restores the state. The step loop puts each global batch on the devices and calls the jitted
train step (rng = fold_in(train key, step) per replica); every `log_every_steps` it writes metrics
and progress (with several replicas: each metric's mean, std and per-replica values), every
`eval_every_steps` (and at the end) `evaluate` scores the test split and writes each replica's
figures, and every `checkpoint_every_steps` (and at the end) it saves. Where each file goes is
the workdir's Layout (gan_aec.run.workdir). Re-running with the same workdir resumes from the
latest checkpoint; a finished run does nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

from absl import logging
import jax
import ml_collections
import numpy as np

from gan_aec.errors import NonFiniteError
from gan_aec.run import (cpu_devices, evaluation, metric_logging, preemption,
                         replicas as replicas_lib, sample_quality, sharding)
from gan_aec.run.startup import Run, set_up

def train_batch(run: Run, step: int) -> tuple[dict[str, jax.Array], ...]:
  """Step's global batches on the devices, one [D * n, B, ...] per group of replicas
  (run.groups); each process builds only the pieces its devices hold, and replicas of one seed
  share theirs."""
  groups, pieces = run.groups, {}
  return tuple(sharding.put_replica_batches(
      lambda seed, images: run.batches[seed].get(step, images),
      [run.replicas.seeds[r] for r in groups.members(g)], run.config.batch_size,
      run.example_batch, sharding.replica_batch_sharding(run.mesh), pieces)
      for g in range(groups.calls))


def per_replica(metrics: dict[str, Any]) -> list[dict[str, float]]:
  """Device metrics {name: [R]} -> one {name: float} per replica."""
  host = sharding.gather_to_host(metrics)
  count = len(next(iter(host.values())))
  return [{k: float(np.asarray(v)[r]) for k, v in host.items()} for r in range(count)]


def check_finite(run: Run, step: int, values: list[dict[str, float]],
                 last_checkpoint: int | None) -> None:
  """NonFiniteError naming the bad metrics, the replica, the step and the last good checkpoint."""
  for r, metrics in enumerate(values):
    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
    if not bad:
      continue
    where = (f'the last good checkpoint is step {last_checkpoint} in {run.checkpointer.directory}'
             if last_checkpoint is not None else 'no checkpoint was written yet')
    raise NonFiniteError(
        f'Non-finite {", ".join(bad)}{run.replicas.describe(r)} at step {step} ({metrics}); '
        f'stopped without saving this state; {where}. Lower the learning rate or check the data.')


def _log(run: Run, step: int, logged: dict[str, Any], what: str) -> None:
  run.logger.write_scalars(step, logged)
  shown = {k: v for k, v in logged.items() if not isinstance(v, (list, str))}
  logging.info('step %d %s: %s', step, what, ' '.join(f'{k}={v:.4f}' for k, v in shown.items()))


def stacked(run: Run, state: Any) -> Any:
  """The loop's state (the groups the steps take) as the stacked state [R, ...]."""
  return run.groups.join(state)


def _host_state(run: Run, state: Any, needed: bool) -> Any:
  """The stacked `state` as numpy arrays on this host when `needed` (else None). The replicas
  are spread over the processes' devices, and gathering them is a collective: every process
  takes part, whether or not it needs the result, or the others wait for it forever."""
  if needed or jax.process_count() > 1:
    return sharding.gather_to_host(stacked(run, state))
  return None


def evaluate(run: Run, state: Any, step: int, final: bool) -> dict[str, Any]:
  """Scores `state` on the test split (and its samples, with an extractor), logs the metrics,
  keeps each replica's best-FID state, and writes each replica's figures (process 0)."""
  values = evaluation.evaluate_split(run.eval_fn, state, run.data.test,
                                     run.config.eval_batch_size, run.eval_rngs,
                                     sharding.batch_sharding(run.mesh), run.task.image_range)
  host_state = _host_state(run, state, needed=bool(run.quality) or run.is_writer)
  for r, seed in enumerate(run.replicas.seeds):
    state_r = replicas_lib.replica(host_state, r) if host_state is not None else None
    if run.quality:  # Every process scores the same samples, so all agree on saving the best.
      samples = run.task.drawing.sample_images(state_r, evaluation.sample_metrics_rng(seed),
                                       run.quality.num_samples)
      scores = run.quality.evaluate(samples)
      values[r].update({f'eval_{k}': float(scores[k]) for k in sample_quality.SCALARS
                        if k in scores})
      if run.best[r].offer(step, state_r, scores['fid']):
        logging.info('step %d: best FID so far (%.3f); saved to %s.', step, scores['fid'],
                     run.best[r].directory)
    if run.is_writer:
      files = run.layout.replica(r)
      paths = run.task.drawing.write_figures(state_r, run.data.test, files, step, final, seed=seed)
      run.logger.write_images(step, paths, run.replicas.image_prefix(r))
  logged = replicas_lib.summarize_all(values)
  if run.quality:  # Which network the sample metrics were measured in: its name and hash.
    logged['eval_extractor'] = run.quality.extractor.description
  _log(run, step, logged, 'eval')
  return logged


def _write_samples(run: Run, state: Any, step: int) -> None:
  """The sample grids (process 0 writes; every process joins the gather of the replicas)."""
  host_state = _host_state(run, state, needed=run.is_writer)
  if not run.is_writer:
    return
  for r, seed in enumerate(run.replicas.seeds):
    paths = run.task.drawing.write_samples(replicas_lib.replica(host_state, r),
                                           run.layout.replica(r), step, seed=seed)
    run.logger.write_images(step, paths, run.replicas.image_prefix(r))


def compile_train_step(run: Run, state: Any, batch: dict[str, jax.Array]) -> Callable:
  """The jitted train step, compiled now (with a log line saying so and how long it took)."""
  logging.info('Compiling the train step%s...',
               f' of {len(run.replicas)} replicas' if len(run.replicas) > 1 else '')
  start = time.perf_counter()
  compiled = run.train_fn.compile(state, batch, run.train_rngs, run.step_hyperparameters)
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
  train_fn = None
  # A log step's metrics where nothing else happens at that step: fetched once the next step is
  # dispatched, so the host's wait for them does not leave the devices idle.
  pending: tuple[int, Any] | None = None

  def log(done: int, metrics: Any) -> None:
    values = per_replica(metrics)
    check_finite(run, done, values, last_saved)
    rates = progress.update(done)
    logged = replicas_lib.summarize_all(values)
    run.logger.write_scalars(done, {**logged, 'steps_per_s': rates['steps_per_s'],
                                    'images_per_s': rates['images_per_s']})
    metric_logging.log_progress(
        done, total, {k: v for k, v in logged.items() if not isinstance(v, list)}, rates)

  with preemption.StopRequests() as stop:
    for step in range(run.start_step, total):
      batch = train_batch(run, step)
      if train_fn is None:
        with progress.excluded():
          train_fn = compile_train_step(run, state, batch)
      state, metrics = train_fn(state, batch, run.train_rngs, run.step_hyperparameters)
      if pending is not None:
        log(*pending)
        pending = None
      if wait_for_each_step:  # Several CPU devices must not run different steps at once.
        jax.block_until_ready(metrics)
      done = step + 1
      final = done == total
      signum = stop.requested(done)
      saving = final or signum is not None or run.checkpointer.should_save(done)
      evaluating = done % config.eval_every_steps == 0 or final
      sampling = (not evaluating and task.drawing.write_samples and task.drawing.sample_every_steps
                  and done % task.drawing.sample_every_steps == 0)
      if done % config.log_every_steps == 0 or final:
        if saving or evaluating or sampling:
          log(done, metrics)  # Now: its record goes before the evaluation's, as it always has.
        else:
          pending = (done, metrics)
      elif saving:  # Checked at every save, so a diverged state is never checkpointed.
        check_finite(run, done, per_replica(metrics), last_saved)
      with progress.excluded():  # Throughput counts training steps only.
        if evaluating:
          eval_metrics = evaluate(run, state, done, final)
        elif sampling:
          _write_samples(run, state, done)
        if saving and run.checkpointer.save(done, stacked(run, state),
                                             force=final or signum is not None):
          last_saved = done
          run.logger.flush()  # On a bucket, metrics.jsonl up to the checkpoint is written.
      if signum is not None:
        raise preemption.Preempted(signum, done, run.checkpointer.directory)
  return eval_metrics


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains config.model to config.num_train_steps in workdir (resuming); returns final eval
  metrics.

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
