"""MNIST as in-memory arrays: from TFDS when it has the data, else the bundled real test digits.

TFDS cannot download on an offline machine, yet a first run must still train on real digits. The
package ships the official MNIST test set (10,000 digits, `gan_aec/data/mnist_t10k/`); when TFDS has
no `mnist` in its default data dir and cannot reach its download server, we warn once and split the
bundled digits deterministically: the first 8,000 are `train`, the last 2,000 are `test`. A data dir
given explicitly must hold MNIST (or be able to download it): a mistyped path stops the run instead
of training on other digits. They are never written into the TFDS data dir (a later online run must
get the real 60,000), and the source is recorded in `config.dataset.source` so that 8,000-digit
numbers are not mistaken for full-MNIST ones.
"""

from __future__ import annotations

import os
import socket

from absl import logging
import numpy as np

from gan_aec.data import idx
from gan_aec.data.splits import Data, Split
from gan_aec.errors import DatasetUnavailableError

BUNDLED_DIR = os.path.join(os.path.dirname(__file__), 'mnist_t10k')
BUNDLED_NUM_TEST = 2000  # The last 2,000 bundled digits are the test split; the first 8,000 train.

SOURCE_TFDS = 'tfds'
SOURCE_BUNDLED = 'bundled_mnist_t10k'

# Where TFDS downloads MNIST from; we only check that a TCP connection opens, with a short timeout,
# so an offline machine falls back in seconds instead of minutes of download retries.
_DOWNLOAD_HOST = ('storage.googleapis.com', 443)

IMPORT_HINT = (
    'To train on the full MNIST offline, put the four official IDX files '
    '(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, '
    't10k-labels-idx1-ubyte.gz) in a folder, run `python -m gan_aec.prepare_data --dataset=mnist '
    '--source_dir=FOLDER --data_dir=TFDS_DIR` and pass --config.dataset.data_dir=TFDS_DIR (or run '
    'once on a machine with internet).')


def load_bundled() -> Data:
  """The bundled real digits, split 8,000 train / 2,000 test (deterministic, no shuffling)."""
  images, labels = idx.read_split(BUNDLED_DIR, 't10k')
  n_train = len(images) - BUNDLED_NUM_TEST
  return Data(train=Split(images[:n_train], labels[:n_train]),
              test=Split(images[n_train:], labels[n_train:]),
              source=SOURCE_BUNDLED)


def can_reach_download_server(timeout_s: float = 3.0,
                              host: tuple[str, int] = _DOWNLOAD_HOST) -> bool:
  """Whether a TCP connection to `host` (default: MNIST's download server) opens within
  timeout_s."""
  try:
    with socket.create_connection(host, timeout=timeout_s):
      return True
  except OSError:
    return False


def _tfds_split(builder, split: str) -> Split:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    parts = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False).batch(10000)))
  except (tf.errors.OpError, OSError, ValueError) as e:
    raise DatasetUnavailableError(
        f'The TFDS files of mnist {split} in {builder.data_dir} cannot be read '
        f'({type(e).__name__}: {str(e).splitlines()[0][:300]}). They are damaged or incomplete: '
        f'delete {builder.data_dir} and import or download MNIST again. {IMPORT_HINT}') from e
  return Split(np.concatenate([p['image'] for p in parts]).astype(np.uint8),
               np.concatenate([p['label'] for p in parts]).astype(np.int64))


def load(data_dir: str | None = None, *, offline_fallback: bool = True,
         download: bool = True) -> Data:
  """Loads MNIST's train and test splits into memory.

  Args:
    data_dir: TFDS data dir; None means TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).
    offline_fallback: when the default data dir has no `mnist` and TFDS cannot download it, use the
      bundled digits (with a warning). When False, or when data_dir was given, raise
      DatasetUnavailableError naming the import command instead.
    download: let TFDS download MNIST when it is not in data_dir and the server is reachable.

  Returns:
    Data with uint8 images [N, 28, 28, 1], int64 labels [N] and the source it came from.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder('mnist', data_dir=data_dir)
  if not builder.is_prepared():
    if download and can_reach_download_server():
      builder.download_and_prepare()
    else:
      where = data_dir or 'the default TFDS data dir'
      if data_dir is not None:
        missing = '' if os.path.isdir(os.path.expanduser(data_dir)) else ' (no such folder)'
        raise DatasetUnavailableError(
            f'dataset.data_dir={data_dir}{missing} holds no TFDS `mnist`, and it cannot be '
            f'downloaded there{"" if download else " (dataset.download is False)"}. '
            'Check the path; leave dataset.data_dir unset to train on the bundled digits. '
            + IMPORT_HINT)
      if not offline_fallback:
        raise DatasetUnavailableError(
            f'TFDS has no `mnist` in {where} and cannot download it (no connection to its server), '
            f'and dataset.offline_fallback is False. {IMPORT_HINT}')
      logging.warning(
          'TFDS has no `mnist` in %s and cannot download it. Training on the %s bundled real '
          'MNIST test digits instead (first 8,000 = train, last 2,000 = test); numbers from this '
          'split are not full-MNIST numbers. %s', where, 10000, IMPORT_HINT)
      return load_bundled()
  return Data(train=_tfds_split(builder, 'train'), test=_tfds_split(builder, 'test'),
                   source=SOURCE_TFDS)
