r"""Imports datasets into a TFDS data dir from local files, with no network.

  python -m gan_aec.prepare_data --dataset=mnist --source_dir=DIR --data_dir=TFDS_DIR
  python -m gan_aec.prepare_data --dataset=celeb_a --source_dir=DIR --data_dir=TFDS_DIR

MNIST: DIR holds the official IDX files (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte`,
`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`). Each is checked (magic number, count, size)
before anything is written; afterwards `tfds.load('mnist', data_dir=TFDS_DIR)` reads them offline and
training uses them with `--config.dataset.data_dir=TFDS_DIR`.

With only the test files (as in gan_aec's bundled digits), pass `--holdout=N` to split them
deterministically: the last N images become `test` and the rest `train` (N=2000 matches the
bundled-digits fallback). Without it the import refuses, so a partial set is never mistaken for MNIST.

CelebA: DIR holds the official release's `img_align_celeba.zip` (or the extracted
`img_align_celeba/` folder) and `list_eval_partition.txt`, plus `list_attr_celeba.txt`,
`list_landmarks_align_celeba.txt` and `identity_CelebA.txt` when present (directly or in the
release's Img/, Anno/, Eval/ subfolders); see `gan_aec.celeb_a_import`. The result is TFDS's own
`celeb_a` (train / validation / test), so `--config=configs/dcgan.py:celeb_a
--config.dataset.data_dir=TFDS_DIR` trains on it.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from gan_aec import celeb_a_import, idx

_DATASET = flags.DEFINE_enum('dataset', 'mnist', ['mnist', 'celeb_a'], 'Which dataset to import.')
_SOURCE_DIR = flags.DEFINE_string('source_dir', None, 'Folder with the official files.',
                                  required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir to write into (default: TFDS '
                                "default, ~/tensorflow_datasets).")
_HOLDOUT = flags.DEFINE_integer('holdout', None, 'When only the t10k files are present: make the '
                                'last N images `test` and the rest `train`.')

MNIST_VERSION = '3.0.1'  # The version TFDS's own `mnist` builder has; tfds.load picks it up.


class ImportError_(RuntimeError):  # pylint: disable=invalid-name
  """The source files cannot be imported as asked; nothing was written."""


def mnist_splits(source_dir: str, holdout: int | None = None) -> dict[str, tuple[np.ndarray,
                                                                                  np.ndarray]]:
  """Reads and checks MNIST's IDX files; returns {'train': (images, labels), 'test': (...)}.

  Raises:
    idx.IdxFormatError: a file is truncated, corrupt or of the wrong kind.
    ImportError_: the files present do not make a train and a test split as asked.
  """
  if not os.path.isdir(source_dir):
    raise ImportError_(f'--source_dir={source_dir} is not a folder.')
  train = idx.read_split(source_dir, 'train')
  test = idx.read_split(source_dir, 't10k')
  if test is None:
    raise ImportError_(
        f'{source_dir} has no t10k-images-idx3-ubyte[.gz] / t10k-labels-idx1-ubyte[.gz]: '
        'these are the official MNIST file names.')
  if train is not None:
    if holdout is not None:
      raise ImportError_('--holdout is only for a folder without the train files; '
                         f'{source_dir} has them.')
    return {'train': train, 'test': test}
  if holdout is None:
    raise ImportError_(
        f'{source_dir} has only the test files (t10k-*), not train-images-idx3-ubyte[.gz] and '
        'train-labels-idx1-ubyte[.gz]. To split the test digits into train and test, pass '
        '--holdout=N (the last N images become `test`; 2000 matches the bundled fallback).')
  images, labels = test
  if not 0 < holdout < len(images):
    raise ImportError_(f'--holdout={holdout} must be between 1 and {len(images) - 1}.')
  cut = len(images) - holdout
  return {'train': (images[:cut], labels[:cut]), 'test': (images[cut:], labels[cut:])}


def write_mnist(splits: dict[str, tuple[np.ndarray, np.ndarray]], data_dir: str | None) -> str:
  """Writes splits as TFDS `mnist` (version 3.0.1, same features) into data_dir; returns its path."""
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


def _fail(message: str) -> None:
  logging.error('%s\nNothing was written.', message)
  print(f'error: {message}\nNothing was written.', file=sys.stderr)
  sys.exit(1)


def import_mnist() -> None:
  try:
    splits = mnist_splits(_SOURCE_DIR.value, _HOLDOUT.value)
  except (idx.IdxFormatError, ImportError_) as e:
    _fail(str(e))
  path = write_mnist(splits, _DATA_DIR.value)
  sizes = ', '.join(f'{name} {len(images)}' for name, (images, _) in splits.items())
  how = (f' (the last {_HOLDOUT.value} test-file images are `test`, the rest `train`)'
         if _HOLDOUT.value else '')
  print(f'Wrote TFDS mnist {MNIST_VERSION} to {path}: {sizes}{how}.\n'
        f'Train on it with --config.dataset.data_dir={_DATA_DIR.value or "(TFDS default)"}')


def import_celeb_a() -> None:
  if _HOLDOUT.value is not None:
    _fail('--holdout is for MNIST only; CelebA comes with its official split.')
  try:
    source = celeb_a_import.read_source(_SOURCE_DIR.value)
    path, version = celeb_a_import.write(source, _DATA_DIR.value)
  except celeb_a_import.CelebAFormatError as e:
    _fail(str(e))
  sizes = ', '.join(f'{name} {len(names)}' for name, names in source.splits.items() if names)
  missing = source.missing_annotations()
  if missing:
    print(f'Note: {", ".join(missing)} not found; their features hold placeholders (attributes '
          f'False, landmarks and identity {celeb_a_import.MISSING_INT}).')
  print(f'Wrote TFDS celeb_a {version} to {path}: {sizes}.\n'
        f'Train on it with --config=configs/dcgan.py:celeb_a '
        f'--config.dataset.data_dir={_DATA_DIR.value or "(TFDS default)"}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _DATASET.value == 'mnist':
    import_mnist()
  else:
    import_celeb_a()


if __name__ == '__main__':
  app.run(main)
