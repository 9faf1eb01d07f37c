"""Sample quality of a generative model: features of N generated and N real images, then the
metrics of gan_aec.sample_metrics.

    quality = SampleQuality.for_run(config, data.test)       # None when no extractor is configured
    metrics = quality.evaluate(generated_images)              # {'fid': ..., 'kid': ..., ...}

The real side is the first N images of the test split (N = min(sample_metrics.num_samples, split
size)); their features are computed once per (extractor, dataset, N) and cached as .npz in
`<dataset cache dir>/gan_aec_cache/` (see cache_dir), so each evaluation only embeds the samples.
"""

from __future__ import annotations

import os
import tempfile

from absl import logging
import ml_collections
import numpy as np

from gan_aec import feature_extractor, sample_metrics
from gan_aec.splits import Split

# The scalar metrics, in the order they are logged (eval_<name> in metrics.jsonl).
SCALARS = ('fid', 'kid', 'kid_std', 'precision', 'recall', 'density', 'coverage',
           'classes_covered', 'mean_confidence', 'classifier_score')


def cache_dir(config: ml_collections.ConfigDict) -> str:
  """dataset.cache_dir, else <dataset.data_dir or the TFDS default>/gan_aec_cache."""
  if config.dataset.get('cache_dir'):
    return config.dataset.cache_dir
  root = config.dataset.data_dir or os.environ.get(
      'TFDS_DATA_DIR', os.path.join(os.path.expanduser('~'), 'tensorflow_datasets'))
  return os.path.join(root, 'gan_aec_cache')


def compute(real_features: np.ndarray, fake_features: np.ndarray,
            fake_logits: np.ndarray | None = None, *, seed: int = 0) -> dict[str, object]:
  """All metrics between two feature sets (and the class statistics of the fakes' logits).

  Returns the SCALARS as floats (the class ones only with logits) and 'class_histogram'.
  """
  kid_mean, kid_std = sample_metrics.kid(real_features, fake_features, seed=seed)
  precision, recall = sample_metrics.precision_recall(real_features, fake_features)
  density, coverage = sample_metrics.density_coverage(real_features, fake_features)
  out: dict[str, object] = {'fid': sample_metrics.fid(real_features, fake_features),
                            'kid': kid_mean, 'kid_std': kid_std, 'precision': precision,
                            'recall': recall, 'density': density, 'coverage': coverage}
  if fake_logits is not None:
    out.update(sample_metrics.class_statistics(fake_logits))
  return out


class SampleQuality:
  """Scores generated images against the cached features of N real test images."""

  def __init__(self, extractor: feature_extractor.FeatureExtractor, real: Split,
               num_samples: int, cache_directory: str | None, dataset_id: str):
    self.extractor = extractor
    self.num_samples = min(num_samples, len(real))
    self.real_features = self._real_features(real, cache_directory, dataset_id)

  @classmethod
  def for_run(cls, config: ml_collections.ConfigDict, real: Split) -> 'SampleQuality | None':
    block = config.get('sample_metrics')
    if block is None or not block.extractor:
      return None
    return cls(feature_extractor.load(block.extractor), real, block.num_samples, cache_dir(config),
               dataset_id(config))

  def _real_features(self, real: Split, directory: str | None, data_id: str) -> np.ndarray:
    name = f'real_features-{data_id}-test-n{self.num_samples}-{self.extractor.fingerprint}.npz'
    path = os.path.join(directory, name) if directory else None
    if path and os.path.exists(path):
      try:
        with np.load(path) as cached:
          if cached['features'].shape[0] == self.num_samples:
            return cached['features']
      except (OSError, ValueError, KeyError) as e:
        logging.warning('Cached real features %s are unreadable (%s); recomputing.', path, e)
    features, _ = self.extractor(real.images[:self.num_samples])
    if path:
      try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix='.npz.tmp')
        with os.fdopen(fd, 'wb') as f:
          np.savez(f, features=features, extractor=self.extractor.description)
        os.replace(tmp, path)  # Atomic: never a half-written cache.
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
  return f'{config.dataset.name}-{config.get("image_size", 28)}px-{source}'
