"""Sample quality during and after training: a feature extractor, the real images' features,
and the metrics of gan_aec.sample_metrics between them and a model's samples.

    quality = SampleQuality(load_extractor(spec), data.test, num_samples, cache_dir, dataset_id)
    metrics = quality.evaluate(generated_images)           # {'fid': ..., 'kid': ..., ...}

An extractor spec names the network, in a config (`sample_metrics.extractor`) or on the command
line (`--extractor`):
  mnist-clf-v1                the MNIST feature network shipped in the package (the default of the
                              MNIST configs; gan_aec.classifier.shipped), named by its hash.
  WORKDIR                     a run of configs/mnist_classifier.py: its latest checkpoint; features
                              are the penultimate layer, logits its 10 class logits.
  python:package.module:name  a network you supply (e.g. for CelebA): `name()` is called once and
                              returns a function embed(images) -> features, or
                              -> (features, logits). images: float32 [B, H, W, C] in [0, 1] at the
                              dataset's size; features [B, D]; logits [B, K] or None. Give the
                              function a `version` attribute (a string) when its weights change.
An extractor is identified by what it computes, not where it lies: a classifier run by a hash of
its parameters and its step, a python network by its spec and version. That description goes into
every record of its numbers and keys the cache of the real side: the first N test images' features
(N = min(sample_metrics.num_samples, split size)), computed once per (extractor, dataset, N) and
cached as .npz in the dataset's cache dir (gan_aec.data.cache_dir).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
from typing import Callable

from absl import logging
from etils import epath
import jax
import ml_collections
import numpy as np

from gan_aec import sample_metrics
from gan_aec.classifier import shipped
from gan_aec.data.batching import map_in_batches
from gan_aec.data.splits import Split
from gan_aec.errors import ExtractorError
from gan_aec.run import checkpointing, config as config_lib, metric_logging
from gan_aec.run import workdir as run_workdir

# The scalar metrics, in the order they are logged (eval_<name> in metrics.jsonl).
SCALARS = ('fid', 'kid', 'kid_subsets_std', 'precision', 'recall', 'density', 'coverage',
           'classes_covered', 'mean_confidence', 'classifier_score')

EmbedFn = Callable[[np.ndarray], 'np.ndarray | tuple[np.ndarray, np.ndarray | None]']


# --------------------------------------------------------------------------------------------------
# Feature extractors.
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FeatureExtractor:
  """A network that embeds images in [0, 1]; `description` says which network, by content."""
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
    def embed(chunk):
      chunk = chunk.astype(np.float32) / 255.0 if chunk.dtype == np.uint8 else chunk
      out = self.embed(chunk.astype(np.float32))
      features, logits = out if isinstance(out, tuple) else (out, None)
      return (np.asarray(features, np.float32),
              None if logits is None else np.asarray(logits, np.float32))
    return map_in_batches(embed, images, self.batch_size, pad=False)


def from_shipped() -> FeatureExtractor:
  """mnist-clf-v1, the network in the package (gan_aec.classifier.shipped), named by its
  version and the hash of its weights."""
  model, params = shipped.load()
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x, method='features_and_logits'))
  return FeatureExtractor(description=shipped.describe(params), embed=lambda x: apply(params, x))


def from_classifier_run(workdir: str, step: int | None = None) -> FeatureExtractor:
  """The classifier of a configs/mnist_classifier.py run, at `step` (default: its latest)."""
  from gan_aec.run.tasks import classifier as classifier_task  # pylint: disable=g-import-not-at-top
  saved = run_workdir.saved_config(workdir) if epath.Path(workdir).is_dir() else None
  others = (f'Name a configs/mnist_classifier.py run, {shipped.NAME} (the network shipped in the '
            'package) or python:module:function.')
  if saved is None:
    raise ExtractorError(f'No classifier run in {workdir} (no config.json). {others}')
  if saved.get('model') != 'classifier':
    raise ExtractorError(f'{workdir} is a {saved.get("model")!r} run, not a classifier run. '
                         f'{others}')
  train_hint = ('Train it with: python -m gan_aec.main --config=configs/mnist_classifier.py '
                f'--workdir={workdir}')
  config = ml_collections.ConfigDict(saved)
  model = classifier_task.build_model(config)
  checkpoints = run_workdir.Layout(workdir).checkpoints
  steps = checkpointing.committed_steps(checkpoints)
  if not steps:
    raise ExtractorError(f'The classifier run in {workdir} has no checkpoint yet. {train_hint}')
  step = steps[-1] if step is None else step
  state = checkpointing.restore_on_one_device(checkpoints, step)
  params = state['params']
  apply = jax.jit(lambda p, x: model.apply({'params': p}, x, method='features_and_logits'))
  accuracy = _last_eval_accuracy(workdir, step)
  description = (f'mnist classifier {shipped.digest(params)} step {step}'
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


def load_extractor(spec: str) -> FeatureExtractor:
  """The extractor a spec names: 'mnist-clf-v1' (the shipped network), a classifier run's
  workdir or `python:module:function`."""
  if spec == shipped.NAME:
    return from_shipped()
  if spec.startswith('python:'):
    return from_python(spec)
  return from_classifier_run(spec)


# --------------------------------------------------------------------------------------------------
# Scoring samples.
# --------------------------------------------------------------------------------------------------

def compute(real_features: np.ndarray, fake_features: np.ndarray,
            fake_logits: np.ndarray | None = None, *, seed: int = 0) -> dict[str, object]:
  """All metrics between two feature sets (and the class statistics of the fakes' logits).

  Returns the SCALARS as floats (the class ones only with logits) and 'class_histogram'.
  """
  kid_mean, kid_std = sample_metrics.kid(real_features, fake_features, seed=seed)
  precision, recall = sample_metrics.precision_recall(real_features, fake_features)
  density, coverage = sample_metrics.density_coverage(real_features, fake_features)
  out: dict[str, object] = {'fid': sample_metrics.fid(real_features, fake_features),
                            'kid': kid_mean, 'kid_subsets_std': kid_std, 'precision': precision,
                            'recall': recall, 'density': density, 'coverage': coverage}
  if fake_logits is not None:
    out.update(sample_metrics.class_statistics(fake_logits))
  return out


class SampleQuality:
  """Scores generated images against the cached features of N real test images."""

  def __init__(self, extractor: FeatureExtractor, real: Split, num_samples: int,
               cache_directory: str | None, dataset_id: str):
    self.extractor = extractor
    self.num_samples = min(num_samples, len(real))
    self.real_features = self._real_features(real, cache_directory, dataset_id)

  def _real_features(self, real: Split, directory: str | None, data_id: str) -> np.ndarray:
    name = f'real_features-{data_id}-test-n{self.num_samples}-{self.extractor.fingerprint}.npz'
    path = epath.Path(directory) / name if directory else None
    if path and path.exists():
      try:
        with np.load(io.BytesIO(path.read_bytes())) as cached:
          if cached['features'].shape[0] == self.num_samples:
            return cached['features']
      except (OSError, ValueError, KeyError) as e:
        logging.warning('Cached real features %s are unreadable (%s); recomputing.', path, e)
    features, _ = self.extractor(real.images[:self.num_samples])
    if path:
      try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, features=features, extractor=self.extractor.description)
        run_workdir.write_whole(path, buffer.getvalue())  # Never a half-written cache.
      except OSError as e:
        logging.warning('Cannot cache the real features in %s (%s); they are recomputed each '
                        'start.', directory, e)
    return features

  def evaluate(self, generated: np.ndarray) -> dict[str, object]:
    """Metrics of generated images [num_samples, H, W, C] in [0, 1] against the real ones."""
    features, logits = self.extractor(generated)
    return compute(self.real_features, features, logits)

  def record(self) -> dict[str, object]:
    """What makes two runs' numbers comparable: N, split and extractor."""
    return {'num_samples': self.num_samples, 'split': 'test',
            'extractor': self.extractor.description}


def dataset_id(config: ml_collections.ConfigDict) -> str:
  """Names the real images: dataset, size and where they came from (TFDS or the bundled digits)."""
  source = config.dataset.get('source') or 'tfds'
  return f'{config.dataset.name}-{config_lib.image_size(config)}px-{source}'
