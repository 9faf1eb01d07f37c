"""The datasets a config can name, and the one function that loads any of them for a run."""

from __future__ import annotations

import ml_collections

from gan_aec import celeb_a_data, mnist_data
from gan_aec.splits import Data

# dataset.name -> (channels, image sizes the loader can produce).
DATASETS = {
    'mnist': (1, (28,)),
    'celeb_a': (3, (28, 64)),
}


def channels(config: ml_collections.ConfigDict) -> int:
  """Image channels of config.dataset (1 for MNIST, 3 for CelebA): the models' outputs follow it."""
  return DATASETS[config.dataset.name][0]


def load(config: ml_collections.ConfigDict) -> Data:
  """The train and test splits for config.dataset at config.image_size (uint8, on the host)."""
  dataset = config.dataset
  if dataset.name == 'mnist':
    return mnist_data.load(dataset.data_dir, offline_fallback=dataset.offline_fallback,
                           download=dataset.download)
  if dataset.name == 'celeb_a':
    return celeb_a_data.load(dataset.data_dir, image_size=config.get('image_size', 28),
                             download=dataset.download, cache_dir=dataset.get('cache_dir'))
  raise ValueError(f'Unknown dataset.name {dataset.name!r}; known: {sorted(DATASETS)}.')
