"""The data layer: every dataset a config can name, loaded into uint8 arrays on the host.

    data = gan_aec.data.load(config.dataset, image_size)   # Data(train=Split, test=Split, source)
    batches = gan_aec.data.batching.TrainBatches(data.train, batch_size, seed)

Modules:
  splits            Split (uint8 images [N, H, W, C] + labels) and Data (train, test, source)
  batching          batches as a pure function of (seed, step); uint8 -> float in a value range
  mnist             MNIST from TFDS, or the bundled real digits (mnist_t10k/) offline
  idx, mnist_import MNIST's official IDX files, read and checked; imported into TFDS
  celeb_a           CelebA from TFDS: central crop, resize, a uint8 cache memory-mapped
  celeb_a_import    CelebA's official release files imported into TFDS
  celeb_a_synthetic a fake CelebA release in the official layout, for tests and trials
Nothing here imports JAX or the training application; TensorFlow is imported only where TFDS
is read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from gan_aec.data.splits import Data, Split
from gan_aec.errors import ConfigError

__all__ = ['CACHE_FOLDER', 'DATASETS', 'Data', 'Dataset', 'Split', 'cache_dir', 'default_cache_dir',
           'get', 'load']

CACHE_FOLDER = 'gan_aec_cache'  # Decoded CelebA splits and real-image features, per data dir.


@dataclasses.dataclass(frozen=True)
class Dataset:
  """What a run needs to know of a dataset before loading it.

  Attributes:
    name: the config's `dataset.name`.
    channels: image channels (the models' outputs follow them).
    image_sizes: the square sizes the loader can produce.
    has_labels: whether its splits carry class labels (the classifier needs them).
    loader: (dataset config block, image_size) -> Data.
  """
  name: str
  channels: int
  image_sizes: tuple[int, ...]
  has_labels: bool
  loader: Callable[[Any, int], Data]


# The loaders import their modules when called: naming a dataset does not load TFDS.
def _load_mnist(dataset: Any, image_size: int) -> Data:
  from gan_aec.data import mnist  # pylint: disable=g-import-not-at-top
  del image_size  # 28 only.
  return mnist.load(dataset.get('data_dir'), offline_fallback=dataset.get('offline_fallback', True),
                    download=dataset.get('download', True))


def _load_celeb_a(dataset: Any, image_size: int) -> Data:
  from gan_aec.data import celeb_a  # pylint: disable=g-import-not-at-top
  return celeb_a.load(dataset.get('data_dir'), image_size=image_size, cache_dir=cache_dir(dataset),
                      download=dataset.get('download', True))


DATASETS = {
    'mnist': Dataset('mnist', channels=1, image_sizes=(28,), has_labels=True, loader=_load_mnist),
    'celeb_a': Dataset('celeb_a', channels=3, image_sizes=(28, 64), has_labels=False,
                       loader=_load_celeb_a),
}


def get(name: str, image_size: int | None = None) -> Dataset:
  """The dataset called `name`; ConfigError for an unknown name or an image size it lacks."""
  if name not in DATASETS:
    raise ConfigError(f'Unknown dataset.name {name!r}; choose one of {sorted(DATASETS)}.')
  dataset = DATASETS[name]
  if image_size is not None and image_size not in dataset.image_sizes:
    raise ConfigError(f'image_size={image_size} is not available for {name} (available: '
                      f'{", ".join(map(str, dataset.image_sizes))}).')
  return dataset


def load(dataset: Any, image_size: int) -> Data:
  """The train and test splits of the config's `dataset` block at image_size (uint8, on the host).

  Args:
    dataset: the config's `dataset` block (name, data_dir, download, offline_fallback, cache_dir;
      test_images: keep only the first this many test images).
    image_size: the square size the model trains at.
  """
  data = get(dataset.name, image_size).loader(dataset, image_size)
  limit = dataset.get('test_images')
  if limit:  # The first `limit` test images (config.dataset.test_images).
    test = data.test
    data = dataclasses.replace(data, test=Split(
        test.images[:limit], None if test.labels is None else test.labels[:limit]))
  return data


def default_cache_dir(data_dir: str | None) -> str:
  """`<data_dir, or TFDS's default data dir>/gan_aec_cache`."""
  root = data_dir or os.environ.get(
      'TFDS_DATA_DIR', os.path.join(os.path.expanduser('~'), 'tensorflow_datasets'))
  return os.path.join(root, CACHE_FOLDER)


def cache_dir(dataset: Any) -> str:
  """Where decoded splits and real-image features are cached: the `dataset` block's cache_dir,
  else default_cache_dir(its data_dir)."""
  return dataset.get('cache_dir') or default_cache_dir(dataset.get('data_dir'))
