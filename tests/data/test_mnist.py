"""MNIST loading (TFDS, mocked TFDS, bundled fallback) and the in-memory batch pipeline."""

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds

from gan_aec import errors
from gan_aec.data import batching, mnist


@pytest.fixture
def offline(monkeypatch):
  monkeypatch.setattr(mnist, 'can_reach_download_server', lambda *a, **k: False)


@pytest.fixture(scope='module')
def bundled():
  return mnist.load_bundled()


def test_bundled_digits_are_the_real_test_set_split_8000_2000(bundled):
  assert bundled.source == mnist.SOURCE_BUNDLED
  chex.assert_shape(bundled.train.images, (8000, 28, 28, 1))
  chex.assert_shape(bundled.test.images, (2000, 28, 28, 1))
  assert bundled.train.images.dtype == np.uint8
  assert bundled.train.labels.dtype == np.int64
  # Every digit class is present in both splits, in MNIST-like proportions.
  for split in (bundled.train, bundled.test):
    counts = np.bincount(split.labels, minlength=10)
    assert counts.min() > 0.07 * len(split) and counts.max() < 0.13 * len(split)
  # Real digits: dark background, a few bright strokes.
  mean = bundled.test.images.mean() / 255
  assert 0.1 < mean < 0.15


def test_the_default_data_dir_offline_falls_back_to_bundled_digits(tmp_path, offline, bundled,
                                                                    monkeypatch):
  import tensorflow_datasets.core.constants  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(tensorflow_datasets.core.constants, 'DATA_DIR', str(tmp_path / 'tfds'))
  data = mnist.load()
  assert data.source == mnist.SOURCE_BUNDLED
  np.testing.assert_array_equal(data.test.images, bundled.test.images)
  # The fallback never writes the bundled digits into the TFDS data dir.
  assert not (tmp_path / 'tfds' / 'mnist').exists()


@pytest.mark.parametrize('folder, says', [('no_such_dir', 'no such folder'), ('', 'holds no')])
def test_a_data_dir_given_without_mnist_stops_instead_of_using_other_digits(tmp_path, offline,
                                                                           folder, says):
  with pytest.raises(errors.DatasetUnavailableError, match=says) as raised:
    mnist.load(str(tmp_path / folder))
  assert 'leave dataset.data_dir unset' in str(raised.value) and '\n' not in str(raised.value)


def test_fallback_turned_off_names_the_import_command(offline):
  with pytest.raises(errors.DatasetUnavailableError, match='gan_aec.prepare_data'):
    mnist.load(offline_fallback=False)


def test_download_disabled_falls_back_without_contacting_the_server(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError('the network must not be tried when download=False')
  monkeypatch.setattr(mnist, 'can_reach_download_server', fail)
  assert mnist.load(download=False).source == mnist.SOURCE_BUNDLED


def test_online_path_reads_tfds_under_mock_data(tmp_path, monkeypatch):
  # A machine that reaches the server: TFDS "downloads" (mocked) and the loader reads its splits.
  monkeypatch.setattr(mnist, 'can_reach_download_server', lambda *a, **k: True)
  with tfds.testing.mock_data(num_examples=24):
    data = mnist.load(str(tmp_path))
  assert data.source == mnist.SOURCE_TFDS
  for split in (data.train, data.test):
    chex.assert_shape(split.images, (24, 28, 28, 1))
    assert split.images.dtype == np.uint8
    assert split.labels.min() >= 0 and split.labels.max() <= 9


def test_train_batches_are_a_deterministic_function_of_seed_and_step(bundled):
  batches = batching.TrainBatches(bundled.train, 200, seed=3)
  again = batching.TrainBatches(bundled.train, 200, seed=3)
  other_seed = batching.TrainBatches(bundled.train, 200, seed=4)
  for step in (0, 7, 39, 40, 123):
    np.testing.assert_array_equal(batches.indices(step), again.indices(step))
  assert not np.array_equal(batches.indices(0), other_seed.indices(0))
  batch = batches.get(5)
  chex.assert_shape(batch['image'], (200, 28, 28, 1))
  chex.assert_type(batch['image'], np.float32)
  assert batch['image'].min() >= 0.0 and batch['image'].max() <= 1.0
  assert batch['image'].max() == 1.0  # 255 maps to exactly 1.


def test_each_epoch_is_a_fresh_permutation_of_the_whole_split(bundled):
  batches = batching.TrainBatches(bundled.train, 200, seed=0)
  assert batches.steps_per_epoch == 40
  epoch0 = np.concatenate([batches.indices(s) for s in range(40)])
  epoch1 = np.concatenate([batches.indices(s) for s in range(40, 80)])
  np.testing.assert_array_equal(np.sort(epoch0), np.arange(8000))
  np.testing.assert_array_equal(np.sort(epoch1), np.arange(8000))
  assert not np.array_equal(epoch0, epoch1)


def test_process_slices_make_up_the_global_batch(bundled):
  whole = batching.TrainBatches(bundled.train, 64, seed=0).get(11)
  parts = [batching.TrainBatches(bundled.train, 64, seed=0, process_index=i,
                                       process_count=4).get(11) for i in range(4)]
  for key in ('image', 'label'):
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_eval_batches_cover_the_split_once_with_padding_masked(bundled):
  batches = list(batching.eval_batches(bundled.test, 300))
  assert len(batches) == 7  # 2,000 images in batches of 300: the last one holds 200 + padding.
  assert all(b['image'].shape == (300, 28, 28, 1) for b in batches)
  assert sum(int(b['mask'].sum()) for b in batches) == 2000
  labels = np.concatenate([b['label'][b['mask']] for b in batches])
  np.testing.assert_array_equal(labels, bundled.test.labels)


def test_map_in_batches_pads_to_one_shape_and_never_past_the_inputs():
  shapes = []

  def fn(x):
    shapes.append(x.shape)
    return x * 2, None
  doubled, nothing = batching.map_in_batches(fn, np.arange(1100.0), 500)
  np.testing.assert_array_equal(doubled, np.arange(1100.0) * 2)
  assert nothing is None and shapes == [(500,)] * 3  # The last 100 padded to 500.
  shapes.clear()
  np.testing.assert_array_equal(batching.map_in_batches(fn, np.arange(200.0), 500)[0],
                                np.arange(200.0) * 2)
  assert shapes == [(200,)]  # Fewer inputs than a batch: one batch of their size.


def test_batch_larger_than_split_is_a_clear_error(bundled):
  with pytest.raises(ValueError, match='larger than the training split'):
    batching.TrainBatches(bundled.test, 4000, seed=0)
