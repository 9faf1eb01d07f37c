"""MNIST's official IDX files -> TFDS `mnist` in a data dir, offline (`prepare_data` runs it).

The files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
`t10k-labels-idx1-ubyte`) are each checked (magic number, count, size) before anything is
written; afterwards `tfds.load('mnist', data_dir=...)` reads them offline. A folder with only the
test files (like the bundled digits) is split only when asked (`holdout`): the last N images
become `test`, the rest `train` (N = 2,000 gives the bundled fallback's split).
"""

from __future__ import annotations

import os

import numpy as np

from gan_aec.data import idx
from gan_aec.errors import DataImportError

MNIST_VERSION = '3.0.1'  # The version TFDS's own `mnist` builder has; tfds.load picks it up.


def mnist_splits(source_dir: str, holdout: int | None = None) -> dict[str, tuple[np.ndarray,
                                                                                  np.ndarray]]:
  """Reads and checks MNIST's IDX files; returns {'train': (images, labels), 'test': (...)}.

  Raises:
    IdxFormatError: a file is truncated, corrupt or of the wrong kind.
    DataImportError: the files present do not make a train and a test split as asked.
  """
  if not os.path.isdir(source_dir):
    raise DataImportError(f'--source_dir={source_dir} is not a folder.')
  train = idx.read_split(source_dir, 'train')
  test = idx.read_split(source_dir, 't10k')
  if test is None:
    raise DataImportError(
        f'{source_dir} has no t10k-images-idx3-ubyte[.gz] / t10k-labels-idx1-ubyte[.gz]: '
        'these are the official MNIST file names.')
  if train is not None:
    if holdout is not None:
      raise DataImportError('--holdout is only for a folder without the train files; '
                            f'{source_dir} has them.')
    return {'train': train, 'test': test}
  if holdout is None:
    raise DataImportError(
        f'{source_dir} has only the test files (t10k-*), not train-images-idx3-ubyte[.gz] and '
        'train-labels-idx1-ubyte[.gz]. To split the test digits into train and test, pass '
        '--holdout=N (the last N images become `test`; 2000 matches the bundled fallback).')
  images, labels = test
  if not 0 < holdout < len(images):
    raise DataImportError(f'--holdout={holdout} must be between 1 and {len(images) - 1}.')
  cut = len(images) - holdout
  return {'train': (images[:cut], labels[:cut]), 'test': (images[cut:], labels[cut:])}


def write_mnist(splits: dict[str, tuple[np.ndarray, np.ndarray]], data_dir: str | None) -> str:
  """Writes splits as TFDS `mnist` (version 3.0.1, same features) into data_dir; returns its
  path."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(28, 28, 1)),
      'label': tfds.features.ClassLabel(num_classes=10),
  })
  # (key, example) pairs; the key is the image's index in its split, so the order is stable.
  split_datasets = {
      name: [(i, {'image': image, 'label': int(label)})
             for i, (image, label) in enumerate(zip(images, labels))]
      for name, (images, labels) in splits.items()
  }
  builder = tfds.dataset_builders.store_as_tfds_dataset(
      name='mnist', version=MNIST_VERSION, features=features, split_datasets=split_datasets,
      data_dir=data_dir, config=None,
      description='MNIST imported by gan_aec.prepare_data from local IDX files.',
      homepage='http://yann.lecun.com/exdb/mnist/',
      disable_shuffling=True)  # Keep the files' order: the split equals the bundled fallback's.
  return str(builder.data_dir)
