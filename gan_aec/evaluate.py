r"""Recomputes a run's sample metrics from a checkpoint and writes them to WORKDIR/eval.json.

  python -m gan_aec.evaluate --workdir=runs/dcgan --extractor=runs/mnist_classifier
  python -m gan_aec.evaluate --workdir=runs/dcgan --checkpoint=latest,best
  python -m gan_aec.evaluate --workdir=runs/mnist_classifier --references

N generated images (the same latents the training loop scores) against the first N test images,
in the extractor's features: FID, KID (+ std over subsets), precision, recall, density, coverage and, with a classifier, the
class histogram, classes covered, mean confidence and classifier score. eval.json keeps one entry
per checkpoint evaluated ('latest', 'best' or 'step_N'), each with N, split, extractor and step, so
that runs are compared on equal terms. --references adds the yardsticks for the same N and
extractor: real training images (the floor), uniform noise, and one training image repeated N times.
--extractor defaults to the run's sample_metrics.extractor (for a classifier run, the run itself).
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile

from absl import app, flags, logging
import jax
import ml_collections
import numpy as np

from gan_aec import (checkpointing, datasets, errors, feature_extractor, input_pipeline,
                     sample_quality, tasks, train)
from gan_aec import workdir as run_workdir

EVAL_FILE = 'eval.json'

flags.DEFINE_string('workdir', None, 'The run to evaluate.', required=True)
flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' (lowest FID during training), a step, "
                    'or several separated by commas, e.g. latest,best.')
flags.DEFINE_string('extractor', None, 'Classifier workdir or python:module:function; default: '
                    "the run's config.sample_metrics.extractor.")
flags.DEFINE_integer('num_samples', None, 'N; default: the config\'s sample_metrics.num_samples '
                     '(10,000), at most the test split size.')
flags.DEFINE_bool('references', False, 'Also score real training images, noise and one repeated '
                  'image against the test images.')


def _load_run(workdir: str) -> ml_collections.ConfigDict:
  saved = run_workdir.saved_config(workdir)
  if saved is None:
    raise errors.UserError(f'No run in {workdir} (no config.json); train one with '
                           'python -m gan_aec.main --config=... --workdir=' + workdir)
  return ml_collections.ConfigDict(saved)


def _checkpoint_step(workdir: str, which: str) -> tuple[str, str, int]:
  """(label, checkpoint directory, step) for --checkpoint."""
  if which == 'best':
    directory = os.path.join(workdir, 'best_checkpoint')
    steps = checkpointing.committed_steps(directory)
    if not steps:
      raise errors.UserError(f'{workdir} has no best checkpoint: it was trained without '
                             'config.sample_metrics.extractor. Use --checkpoint=latest.')
    return 'best', directory, steps[-1]
  directory = os.path.join(workdir, 'checkpoints')
  steps = checkpointing.committed_steps(directory)
  if not steps:
    raise errors.UserError(f'{workdir} has no checkpoint yet.')
  if which == 'latest':
    return 'latest', directory, steps[-1]
  if not which.isdigit() or int(which) not in steps:
    raise errors.UserError(f'--checkpoint={which}: use latest, best or one of the steps {steps}.')
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


def _write(path: str, record: dict) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix='.tmp')
  with os.fdopen(fd, 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=1)
  os.replace(tmp, path)


def evaluate(workdir: str, *, checkpoint: str = 'latest', extractor: str | None = None,
             num_samples: int | None = None, references: bool = False) -> dict:
  """Scores the run in workdir; updates and returns the contents of WORKDIR/eval.json.

  checkpoint: 'latest', 'best', a step, or several of them separated by commas (data, extractor and
  real features are then loaded once for all).
  """
  workdir = os.path.abspath(workdir)
  config = _load_run(workdir)
  block = config.get('sample_metrics') or {}
  spec = extractor or block.get('extractor') or (workdir if config.model == 'classifier' else None)
  if not spec:
    raise errors.UserError('No feature extractor: pass --extractor=CLASSIFIER_WORKDIR (train one '
                           'with configs/mnist_classifier.py) or python:module:function.')
  task = tasks.build_task(config)
  if task.sample_images is None and not references:
    raise errors.UserError(f'A {config.model} run does not generate samples; only --references '
                           'can be computed for it.')
  data = datasets.load(config)
  quality = sample_quality.SampleQuality(
      feature_extractor.load(spec), data.test,
      num_samples or block.get('num_samples') or len(data.test),
      sample_quality.cache_dir(config), sample_quality.dataset_id(config))
  path = os.path.join(workdir, EVAL_FILE)
  record = {}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      record = json.load(f)
  common = {**quality.record(), 'date': datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec='seconds')}

  if task.sample_images is not None:
    example = {'image': input_pipeline.to_float(data.test.images[:1], task.image_range)}
    abstract = jax.eval_shape(task.create_state, jax.random.key(0), example)
  for which in (checkpoint.split(',') if task.sample_images is not None else []):
    label, directory, step = _checkpoint_step(workdir, which.strip())
    state = checkpointing.restore_on_one_device(directory, step, abstract)
    samples = task.sample_images(state, train.sample_metrics_rng(config.seed), quality.num_samples)
    record[label] = {'step': step, 'checkpoint': os.path.join(directory, str(step)),
                     **common, **quality.evaluate(samples)}
    logging.info('%s (step %d): %s', label, step, _summary(record[label]))
  if references:
    record['references'] = {**common, **{
        name: quality.evaluate(images)
        for name, images in reference_images(data.train.images, quality.num_samples).items()}}
    for name, scores in record['references'].items():
      if isinstance(scores, dict):
        logging.info('reference %s: %s', name, _summary(scores))
  _write(path, record)
  return record


def _summary(scores: dict) -> str:
  return ' '.join(f'{k}={scores[k]:.4g}' for k in sample_quality.SCALARS if k in scores)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    evaluate(flags.FLAGS.workdir, checkpoint=flags.FLAGS.checkpoint,
             extractor=flags.FLAGS.extractor, num_samples=flags.FLAGS.num_samples,
             references=flags.FLAGS.references)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  print(f'Wrote {os.path.join(os.path.abspath(flags.FLAGS.workdir), EVAL_FILE)}')


if __name__ == '__main__':
  app.run(main)
