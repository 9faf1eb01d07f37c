"""Feature extractors for the sample-quality metrics: images -> (features, class logits).

A spec names one, in a config (`sample_metrics.extractor`) or on the command line (`--extractor`):
  WORKDIR                     a run of configs/mnist_classifier.py: its latest checkpoint; features
                              are the penultimate layer, logits its 10 class logits.
  python:package.module:name  a network you supply (e.g. for CelebA): `name()` is called once and
                              returns a function embed(images) -> features, or
                              -> (features, logits). images: float32 [B, H, W, C] in [0, 1] at the
                              dataset's size; features [B, D]; logits [B, K] or None. Give the
                              function a `version` attribute (a string) when its weights change: the
                              cached real-data features are keyed by the spec and that version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import os
from typing import Callable

import jax
import ml_collections
import numpy as np

from gan_aec import checkpointing, errors, metric_logging
from gan_aec import workdir as run_workdir

EmbedFn = Callable[[np.ndarray], 'np.ndarray | tuple[np.ndarray, np.ndarray | None]']


class ExtractorError(errors.UserError, ValueError):
  """The extractor spec names nothing usable."""


@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """A network that embeds images in [0, 1]; `description` says which network and checkpoint."""
  description: str
  embed: EmbedFn
  batch_size: int = 500

  @property
  def fingerprint(self) -> str:
    """A short hash of the description: the key of cached real-data features."""
    return hashlib.sha1(self.description.encode()).hexdigest()[:12]

  def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(features [N, D] float32, logits [N, K] float32 or None) of images [N, H, W, C] in [0, 1]
    (float) or 0..255 (uint8)."""
    features, logits = [], []
    for start in range(0, len(images), self.batch_size):
      chunk = np.asarray(images[start:start + self.batch_size])
      if chunk.dtype == np.uint8:
        chunk = chunk.astype(np.float32) / 255.0
      out = self.embed(chunk.astype(np.float32))
      f, l = out if isinstance(out, tuple) else (out, None)
      features.append(np.asarray(f, np.float32))
      if l is not None:
        logits.append(np.asarray(l, np.float32))
    return (np.concatenate(features),
            np.concatenate(logits) if len(logits) == len(features) and logits else None)


def from_classifier_run(workdir: str, step: int | None = None) -> FeatureExtractor:
  """The classifier of a configs/mnist_classifier.py run, at `step` (default: its latest)."""
  from gan_aec.classifier import task as classifier_task  # pylint: disable=g-import-not-at-top
  workdir = os.path.abspath(workdir)
  saved = run_workdir.saved_config(workdir) if os.path.isdir(workdir) else None
  train_hint = ('Train one with: python -m gan_aec.main --config=configs/mnist_classifier.py '
                f'--workdir={workdir}')
  if saved is None:
    raise ExtractorError(f'No classifier run in {workdir} (no config.json). {train_hint}')
  if saved.get('model') != 'classifier':
    raise ExtractorError(f'{workdir} is a {saved.get("model")!r} run, not a classifier run. '
                         f'{train_hint}')
  config = ml_collections.ConfigDict(saved)
  model = classifier_task.build_model(config)
  steps = checkpointing.committed_steps(os.path.join(workdir, 'checkpoints'))
  if not steps:
    raise ExtractorError(f'The classifier run in {workdir} has no checkpoint yet. {train_hint}')
  step = steps[-1] if step is None else step
  state = checkpointing.restore_on_one_device(os.path.join(workdir, 'checkpoints'), step)
  params = state['params']
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x, method='features_and_logits'))
  accuracy = _last_eval_accuracy(workdir, step)
  description = (f'classifier {workdir} step {step}'
                 + (f' (test accuracy {100 * accuracy:.2f}%)' if accuracy is not None else ''))
  return FeatureExtractor(description=description, embed=lambda x: apply(params, x))


def _last_eval_accuracy(workdir: str, step: int) -> float | None:
  accuracies = [r['eval_accuracy'] for r in metric_logging.read_records(workdir)
                if r.get('step') == step and 'eval_accuracy' in r]
  return accuracies[-1] if accuracies else None


def from_python(spec: str) -> FeatureExtractor:
  """`python:package.module:name`: the network a user supplies (see the module docstring)."""
  target = spec[len('python:'):]
  module_name, _, attr = target.partition(':')
  if not module_name or not attr:
    raise ExtractorError(f'Extractor {spec!r} should read python:package.module:function.')
  try:
    factory = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    raise ExtractorError(f'Cannot load the extractor {spec!r}: {e}. Is its module on PYTHONPATH?'
                         ) from e
  embed = factory()
  version = getattr(embed, 'version', None)
  return FeatureExtractor(description=spec + (f' version {version}' if version else ''),
                          embed=embed)


def load(spec: str) -> FeatureExtractor:
  """The extractor a spec names: a classifier run's workdir or `python:module:function`."""
  if spec.startswith('python:'):
    return from_python(spec)
  return from_classifier_run(spec)
