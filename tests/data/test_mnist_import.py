"""gan_aec.prepare_data: official IDX files in, an offline TFDS `mnist` out; bad files rejected."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from gan_aec import errors
from gan_aec.data import mnist, mnist_import
from tests import helpers


def test_import_of_generated_idx_files_is_read_by_tfds_load(tmp_path):
  written = helpers.write_mnist_files(str(tmp_path / 'src'), num_train=30, num_test=12)
  data_dir = str(tmp_path / 'tfds')
  mnist_import.write_mnist(mnist_import.mnist_splits(str(tmp_path / 'src')), data_dir)

  for split, prefix in (('train', 'train'), ('test', 't10k')):
    ds = tfds.load('mnist', split=split, data_dir=data_dir, download=False, shuffle_files=False)
    examples = list(tfds.as_numpy(ds))
    images, labels = written[prefix]
    np.testing.assert_array_equal(np.stack([e['image'][..., 0] for e in examples]), images)
    np.testing.assert_array_equal([e['label'] for e in examples], labels)
  # And the training loader takes it as real TFDS data, no fallback.
  data = mnist.load(data_dir, download=False, offline_fallback=False)
  assert data.source == mnist.SOURCE_TFDS and len(data.train) == 30 and len(data.test) == 12


def test_test_files_only_need_an_explicit_holdout(tmp_path):
  written = helpers.write_mnist_files(str(tmp_path), num_train=None, num_test=20)
  with pytest.raises(errors.DataImportError, match='--holdout'):
    mnist_import.mnist_splits(str(tmp_path))
  splits = mnist_import.mnist_splits(str(tmp_path), holdout=5)
  images, labels = written['t10k']
  np.testing.assert_array_equal(splits['train'][0][..., 0], images[:15])
  np.testing.assert_array_equal(splits['test'][1], labels[15:])


@pytest.mark.parametrize('damage', ['truncate', 'wrong_magic', 'count_mismatch'])
def test_damaged_files_are_rejected_with_the_file_named(tmp_path, damage):
  helpers.write_mnist_files(str(tmp_path), num_train=10, num_test=10)
  images_path = str(tmp_path / 'train-images-idx3-ubyte.gz')
  if damage == 'truncate':
    helpers.write_idx(images_path, np.zeros((10, 28, 28), np.uint8))
    import gzip  # pylint: disable=g-import-not-at-top
    with gzip.open(images_path, 'rb') as f:
      data = f.read()
    with gzip.open(images_path, 'wb') as f:
      f.write(data[:-100])
    match = 'truncated'
  elif damage == 'wrong_magic':
    # A labels file under the images name.
    helpers.write_idx(images_path, np.zeros((10,), np.uint8))
    match = 'magic number'
  else:
    helpers.write_idx(images_path, np.zeros((9, 28, 28), np.uint8))
    match = '9 images'
  with pytest.raises(errors.IdxFormatError, match=match) as error:
    mnist_import.mnist_splits(str(tmp_path))
  assert 'train-' in str(error.value)


@pytest.mark.slow
def test_cli_on_a_corrupt_file_exits_with_a_message_and_writes_nothing(tmp_path):
  helpers.write_mnist_files(str(tmp_path / 'src'), num_train=10, num_test=10)
  with open(tmp_path / 'src' / 't10k-labels-idx1-ubyte.gz', 'wb') as f:
    f.write(b'not a gzip file')
  data_dir = tmp_path / 'tfds'
  result = subprocess.run(
      [sys.executable, '-m', 'gan_aec.prepare_data', '--dataset=mnist',
       f'--source_dir={tmp_path / "src"}', f'--data_dir={data_dir}'],
      capture_output=True, text=True, timeout=300, check=False,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert result.returncode == 1
  assert 't10k-labels-idx1-ubyte.gz' in result.stderr and 'Nothing was written' in result.stderr
  assert not data_dir.exists()
