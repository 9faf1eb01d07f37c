"""Evaluation: a state's test metrics over a whole split, and a finished run's sample metrics
recomputed from its checkpoints (what `python -m gan_aec.evaluate` runs).

    metrics = evaluate_split(eval_fn, state, data.test, ...)  # {"eval_<name>": mean over the split}
    record = evaluate_checkpoints(workdir, checkpoint='latest,best', references=True)

evaluate_checkpoints scores N generated images (the same latents the training loop scores)
against the first N test images, in the extractor's features: FID, KID (+ std over subsets),
precision, recall, density, coverage and, with a classifier, the class histogram, classes
covered, mean confidence and classifier score. WORKDIR/eval.json keeps one entry per checkpoint
evaluated ('latest', 'best' or 'step_N'), each with N, split, extractor and step, so that runs
are compared on equal terms; `references` adds the yardsticks for the same N and extractor: real
training images, uniform noise, and one training image repeated N times.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Callable

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np

from gan_aec import data as datasets
from gan_aec.data import batching
from gan_aec.data.splits import Split
from gan_aec.errors import UserError
from gan_aec.run import checkpointing, config as config_lib, cpu_devices, sample_quality
from gan_aec.run import replicas as replicas_lib, sharding, tasks
from gan_aec.run import workdir as run_workdir

# Streams derived from config.seed: the latents of the samples scored by the sample metrics.
SAMPLE_METRICS_STREAM = 4


def sample_metrics_rng(seed: int) -> jax.Array:
  """The key of the samples scored at every evaluation: the same latents each time, and the
  same ones evaluate_checkpoints scores, so its numbers match the training log's."""
  return jax.random.fold_in(jax.random.key(seed), SAMPLE_METRICS_STREAM)


# Each replica's key folded with the batch index; jitted, so that the keys keep their sharding.
_fold_each = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))


def evaluate_split(eval_fn: Callable, states: Any, split: Split, batch_size: int,
                   rngs: jax.Array, batch_sharding: jax.sharding.NamedSharding,
                   value_range: batching.ValueRange) -> list[dict[str, float]]:
  """eval_fn's sums over every image of `split`, divided by their count, for each replica:
  [{'eval_<name>': mean}] (one dict per replica; `states` and `rngs` in the groups eval_fn
  takes, gan_aec.run.sharding.ReplicaGroups).

  Every replica scores the same batches; every process builds each batch and transfers the
  pieces its devices hold.
  """
  wait = cpu_devices.wait_for_each_step(batch_sharding.mesh)
  totals = None
  for i, batch in enumerate(batching.eval_batches(split, batch_size, value_range=value_range)):
    device_batch = {k: sharding.put_global(v, batch_sharding) for k, v in batch.items()}
    sums = eval_fn(states, device_batch, tuple(_fold_each(r, i) for r in rngs))
    if wait:
      jax.block_until_ready(sums)
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  totals = sharding.gather_to_host(totals)
  count = totals.pop('count')
  return [{f'eval_{k}': float(v[r]) / float(count[r]) for k, v in totals.items()}
          for r in range(len(count))]


# --------------------------------------------------------------------------------------------------
# A finished run's sample metrics, from its checkpoints.
# --------------------------------------------------------------------------------------------------

def _load_run(workdir: str) -> ml_collections.ConfigDict:
  saved = run_workdir.saved_config(workdir)
  if saved is None:
    raise UserError(f'No run in {workdir} (no config.json); train one with '
                    'python -m gan_aec.main --config=... --workdir=' + workdir)
  return ml_collections.ConfigDict(saved)


def _checkpoint_step(layout: run_workdir.Layout, which: str, r: int) -> tuple[str, str, int]:
  """(label, checkpoint directory, step) for a checkpoint name (replica r's own best checkpoint)."""
  workdir = layout.workdir
  if which == 'best':
    directory = layout.replica(r).best_checkpoint
    steps = checkpointing.committed_steps(directory)
    if not steps:
      raise UserError(f'{workdir} has no best checkpoint: it was trained without '
                      'config.sample_metrics.extractor. Use --checkpoint=latest.')
    return 'best', directory, steps[-1]
  directory = layout.checkpoints
  steps = checkpointing.committed_steps(directory)
  if not steps:
    raise UserError(f'{workdir} has no checkpoint yet.')
  if which == 'latest':
    return 'latest', directory, steps[-1]
  if not which.isdigit() or int(which) not in steps:
    raise UserError(f'--checkpoint={which}: use latest, best or one of the steps {steps}.')
  return f'step_{which}', directory, int(which)


def reference_images(train: np.ndarray, num: int, seed: int = 0) -> dict[str, np.ndarray]:
  """Yardsticks [num, H, W, C] in [0, 1]: a random sample of the real training images (what a
  perfect generator of the training distribution would give), uniform noise, and one training
  image repeated."""
  shape = train.shape[1:]
  rng = np.random.default_rng(seed)
  pick = np.sort(rng.choice(len(train), min(num, len(train)), replace=False))
  real = train[pick].astype(np.float32) / 255.0
  return {'real_train_images': real,
          'uniform_noise': rng.uniform(size=(num, *shape)).astype(np.float32),
          'one_repeated_image': np.repeat(real[:1], num, axis=0)}


def _write(path: epath.Path, record: dict) -> None:
  run_workdir.write_whole(path, json.dumps(record, indent=1))


def summary(scores: dict) -> str:
  """The scalar sample metrics on one line."""
  return ' '.join(f'{k}={scores[k]:.4g}' for k in sample_quality.SCALARS if k in scores)


def evaluate_checkpoints(workdir: str, *, checkpoint: str = 'latest', extractor: str | None = None,
                         num_samples: int | None = None, references: bool = False) -> dict:
  """Scores the run in workdir; updates and returns the contents of WORKDIR/eval.json.

  checkpoint: 'latest', 'best', a step, or several of them separated by commas (data, extractor and
  real features are then loaded once for all). extractor: a spec (see gan_aec.run.sample_quality);
  default the run's sample_metrics.extractor (for a classifier run, the run itself).
  """
  if num_samples is not None and num_samples < config_lib.MIN_SAMPLE_METRICS_SAMPLES:
    raise UserError(f'--num_samples={num_samples}: score at least '
                    f'{config_lib.MIN_SAMPLE_METRICS_SAMPLES} samples (density and coverage use '
                    "each sample's 5th nearest neighbour).")
  config = _load_run(workdir)
  spec = (extractor or config_lib.extractor_spec(config)
          or (workdir if config.model == 'classifier' else None)
          or (config_lib.SHIPPED_EXTRACTOR if config.dataset.name == 'mnist' else None))
  if not spec:
    raise UserError(f'No feature extractor for {config.dataset.name}: pass '
                    '--extractor=python:module:function (a network of yours, see '
                    'docs/sample_quality.md) or a configs/mnist_classifier.py run.')
  task = tasks.build_task(config)
  sampling = task.drawing.sample_images is not None
  if not sampling and not references:
    raise UserError(f'A {config.model} run does not generate samples; only --references can be '
                    'computed for it.')
  replicas = replicas_lib.from_config(config, task.step_hyperparameters)
  layout = run_workdir.Layout(workdir, replicas.names())
  whiches = [w.strip() for w in checkpoint.split(',')] if sampling else []
  for which in whiches:  # Every checkpoint asked for exists, before anything is loaded.
    for r in range(len(replicas)):
      _checkpoint_step(layout, which, r)
  extractor_network = sample_quality.load_extractor(spec)
  data = datasets.load(config.dataset, config_lib.image_size(config))
  num_samples = num_samples or (config.get('sample_metrics') or {}).get('num_samples')
  quality = sample_quality.SampleQuality(
      extractor_network, data.test, num_samples or len(data.test),
      datasets.cache_dir(config.dataset), sample_quality.dataset_id(config))
  path = epath.Path(layout.eval_file)
  record = json.loads(path.read_text(encoding='utf-8')) if path.exists() else {}
  common = {**quality.record(), 'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')}
  if sampling:
    example = {'image': batching.to_float(data.test.images[:1], task.image_range)}
    abstract = jax.eval_shape(task.create_state, jax.random.key(0), example)
  for which in whiches:
    per_replica, states = [], None
    for r, seed in enumerate(replicas.seeds):
      label, directory, step = _checkpoint_step(layout, which, r)
      if which == 'best':  # Each replica's own best state, as one model.
        state = checkpointing.restore_on_one_device(directory, step, abstract)
      else:
        if states is None:
          states = checkpointing.restore_replicas_on_one_device(directory, step, abstract,
                                                                len(replicas))
        state = replicas_lib.replica(states, r)
      samples = task.drawing.sample_images(state, sample_metrics_rng(seed), quality.num_samples)
      scores = {'step': step, 'checkpoint': os.path.relpath(os.path.join(directory, str(step)),
                                                            layout.workdir),
                **quality.evaluate(samples)}
      logging.info('%s%s (step %d): %s', label, replicas.describe(r), step, summary(scores))
      per_replica.append({**replicas.labels()[r], **scores})
    if len(replicas) == 1:
      record[label] = {**common, **scores}
      continue
    record[label] = {**common, 'replicas': per_replica}
    for name in sample_quality.SCALARS:
      if name in per_replica[0]:
        record[label].update(replicas_lib.summarize(name, [s[name] for s in per_replica]))
    logging.info('%s, mean over %d replicas: %s', label, len(replicas), summary(record[label]))
  if references:
    record['references'] = {**common, **{
        name: quality.evaluate(images)
        for name, images in reference_images(data.train.images, quality.num_samples).items()}}
    for name, scores in record['references'].items():
      if isinstance(scores, dict):
        logging.info('reference %s: %s', name, summary(scores))
  _write(path, record)
  return record
