"""CelebA: the crop/resize, the cached pipeline (mock data), the offline import and a training
run."""

import os
import subprocess
import sys
import zipfile

import chex
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from gan_aec import errors
from gan_aec.data import CACHE_FOLDER
from gan_aec.data import batching, celeb_a, celeb_a_import, celeb_a_synthetic
from gan_aec.run import config as config_lib, loop
from tests import helpers


def _jpeg(image: np.ndarray) -> tf.Tensor:
  return tf.constant(celeb_a_synthetic.jpeg_bytes(image))


def test_crop_is_the_central_108_pixels_of_the_decoded_jpeg():
  image = celeb_a_synthetic.fake_face(np.random.default_rng(0))
  jpeg = _jpeg(image)
  cropped = celeb_a.crop_and_resize(jpeg, image_size=108).numpy()
  decoded = tf.io.decode_jpeg(jpeg, channels=3).numpy()
  np.testing.assert_array_equal(cropped, decoded[55:163, 35:143])  # (218-108)/2, (178-108)/2.


@pytest.mark.parametrize('size', [28, 64])
def test_resize_keeps_the_crop_and_averages_instead_of_aliasing(size):
  # Central crop white, outside black: the output is all white. A 1-pixel checkerboard inside the
  # crop averages to mid-grey with antialiasing (a plain subsample would give 0s and 255s).
  image = np.zeros((218, 178, 3), np.uint8)
  image[55:163, 35:143] = 255
  out = celeb_a.crop_and_resize(tf.constant(celeb_a_synthetic.jpeg_bytes(image, 100)),
                                     size).numpy()
  chex.assert_shape(out, (size, size, 3))
  assert out.dtype == np.uint8 and out.min() >= 240
  checker = image.copy()
  checker[55:163, 35:143] = 255 * ((np.add.outer(np.arange(108), np.arange(108)) % 2)[..., None])
  out = celeb_a.crop_and_resize(tf.constant(celeb_a_synthetic.jpeg_bytes(checker, 100)),
                                     size).numpy().astype(float)
  assert abs(out[2:-2, 2:-2].mean() - 127.5) < 12 and out[2:-2, 2:-2].std() < 25


@pytest.fixture
def online(monkeypatch):
  monkeypatch.setattr(celeb_a, 'can_reach_download_server', lambda *a, **k: True)


def test_pipeline_under_mock_data_caches_uint8_and_serves_gan_range_batches(tmp_path, online,
                                                                           monkeypatch):
  with tfds.testing.mock_data(num_examples=20):
    data = celeb_a.load(str(tmp_path), image_size=64)
  for split in (data.train, data.test):
    chex.assert_shape(split.images, (20, 64, 64, 3))
    assert split.images.dtype == np.uint8 and split.labels is None
  cache = tmp_path / CACHE_FOLDER
  assert sorted(os.listdir(cache)) == ['celeb_a-2.1.0-test-crop108-64px.npy',
                                       'celeb_a-2.1.0-train-crop108-64px.npy']

  batches = batching.TrainBatches(data.train, 8, seed=0, value_range=batching.TANH_RANGE)
  batch = batches.get(3)
  assert set(batch) == {'image'}
  chex.assert_shape(batch['image'], (8, 64, 64, 3))
  chex.assert_type(batch['image'], np.float32)
  assert -1.0 <= batch['image'].min() < 0.0 < batch['image'].max() <= 1.0
  np.testing.assert_allclose(batch['image'], data.train.images[batches.indices(3)] / 127.5 - 1,
                             atol=1e-6)

  # Later runs map the cache and never decode a JPEG again.
  monkeypatch.setattr(celeb_a, 'decoded_images', lambda *a, **k: pytest.fail('decoded'))
  with tfds.testing.mock_data(num_examples=20):
    again = celeb_a.load(str(tmp_path), image_size=64)
  assert isinstance(again.train.images, np.memmap)
  np.testing.assert_array_equal(again.train.images, data.train.images)


def test_a_damaged_cache_is_rebuilt(tmp_path, online):
  cache_dir = str(tmp_path / 'cache')
  with tfds.testing.mock_data(num_examples=6):
    train = np.array(celeb_a.load(str(tmp_path), image_size=28,
                                       cache_dir=cache_dir).train.images)
    path = os.path.join(cache_dir, 'celeb_a-2.1.0-train-crop108-28px.npy')
    with open(path + '.bad', 'wb') as f:
      f.write(b'truncated')
    os.replace(path + '.bad', path)  # (Replaced, not truncated in place: the old map stays valid.)
    again = celeb_a.load(str(tmp_path), image_size=28, cache_dir=cache_dir)
  np.testing.assert_array_equal(again.train.images, train)
  assert not [n for n in os.listdir(cache_dir) if '.tmp' in n]


def test_missing_celeb_a_offline_names_the_import_command(tmp_path, monkeypatch):
  monkeypatch.setattr(celeb_a, 'can_reach_download_server', lambda *a, **k: False)
  with pytest.raises(errors.DatasetUnavailableError, match='prepare_data --dataset=celeb_a'):
    celeb_a.load(str(tmp_path), image_size=28)
  with pytest.raises(errors.DatasetUnavailableError, match='dataset.download is False'):
    celeb_a.load(str(tmp_path), image_size=28, download=False)


@pytest.fixture(scope='module')
def imported(tmp_path_factory):
  """A synthetic release (zip, all annotation files) imported into a TFDS data dir."""
  root = tmp_path_factory.mktemp('celeb_a')
  source, data_dir = str(root / 'src'), str(root / 'tfds')
  names = celeb_a_synthetic.write_release(source, 24, 3, 5, seed=1)
  celeb_a_import.write(celeb_a_import.read_source(source), data_dir)
  return source, data_dir, names


def test_import_of_the_official_layout_is_read_by_tfds_load(imported):
  source, data_dir, names = imported
  counts = {split: len(list(tfds.load('celeb_a', split=split, data_dir=data_dir)))
            for split in ('train', 'validation', 'test')}
  assert counts == {'train': 24, 'validation': 3, 'test': 5}
  # The first test image: its JPEG stored unchanged, its annotation rows carried over.
  example = next(iter(tfds.as_numpy(tfds.load('celeb_a', split='test', data_dir=data_dir))))
  with zipfile.ZipFile(os.path.join(source, celeb_a_import.IMAGES_ZIP)) as archive:
    jpeg = archive.read(f'img_align_celeba/{names[27]}')
  np.testing.assert_array_equal(example['image'], tf.io.decode_jpeg(jpeg).numpy())
  _, attr_names, landmark_names = celeb_a_import.tfds_reference()
  attrs = celeb_a_import.read_table(os.path.join(source, celeb_a_import.ATTR_FILE), attr_names,
                                    has_header=True)[names[27]]
  assert [bool(example['attributes'][k]) for k in attr_names] == [v > 0 for v in attrs]
  marks = celeb_a_import.read_table(os.path.join(source, celeb_a_import.LANDMARKS_FILE),
                                    landmark_names, has_header=True)[names[27]]
  assert [int(example['landmarks'][k]) for k in landmark_names] == marks


def test_extracted_folder_in_subfolders_without_annotations_imports_with_placeholders(tmp_path):
  source = tmp_path / 'src'
  names = celeb_a_synthetic.write_release(str(source), 4, 0, 2, as_zip=False, annotations=False)
  (source / 'Img').mkdir()
  (source / 'Eval').mkdir()
  os.rename(source / 'img_align_celeba', source / 'Img' / 'img_align_celeba')
  os.rename(source / 'list_eval_partition.txt', source / 'Eval' / 'list_eval_partition.txt')
  read = celeb_a_import.read_source(str(source))
  assert read.missing_annotations() == [celeb_a_import.ATTR_FILE, celeb_a_import.LANDMARKS_FILE,
                                        celeb_a_import.IDENTITY_FILE]
  assert read.splits == {'train': names[:4], 'validation': [], 'test': names[4:]}
  celeb_a_import.write(read, str(tmp_path / 'tfds'))
  example = next(iter(tfds.as_numpy(tfds.load('celeb_a', split='train',
                                               data_dir=str(tmp_path / 'tfds')))))
  assert example['landmarks']['nose_x'] == -1 and not any(example['attributes'].values())


def _break_partition_line(src):
  with open(src / 'list_eval_partition.txt', 'a', encoding='utf-8') as f:
    f.write('000099.jpg train\n')


def _list_an_absent_image(src):
  with open(src / 'list_eval_partition.txt', 'a', encoding='utf-8') as f:
    f.write('000099.jpg 0\n')


def _replace_an_image_with_a_png(src):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.new('RGB', (178, 218)).save(src / 'img_align_celeba' / '000002.jpg', format='PNG')


def _truncate_an_image(src):
  path = src / 'img_align_celeba' / '000003.jpg'
  path.write_bytes(path.read_bytes()[:40])


def _break_the_attribute_header(src):
  lines = (src / 'list_attr_celeba.txt').read_text(encoding='utf-8').splitlines(True)
  lines[1] = 'Smiling Young\n'
  (src / 'list_attr_celeba.txt').write_text(''.join(lines), encoding='utf-8')


@pytest.mark.parametrize('damage, message', [
    (lambda src: os.remove(src / 'list_eval_partition.txt'), 'no list_eval_partition.txt'),
    (lambda src: os.rename(src / 'img_align_celeba', src / 'images'), 'neither img_align_celeba'),
    (_break_partition_line, r'list_eval_partition.txt, line 7'),
    (_list_an_absent_image, '000099.jpg'),
    (_replace_an_image_with_a_png, '000002.jpg is a 178x218 RGB PNG'),
    (_truncate_an_image, '000003.jpg'),
    (_break_the_attribute_header, 'list_attr_celeba.txt: line 2'),
])
def test_a_broken_layout_is_rejected_with_the_file_named_and_nothing_written(tmp_path, damage,
                                                                            message):
  source = tmp_path / 'src'
  celeb_a_synthetic.write_release(str(source), 4, 1, 1, as_zip=False)
  damage(source)
  data_dir = tmp_path / 'tfds'
  with pytest.raises(celeb_a_import.CelebAFormatError, match=message):
    celeb_a_import.write(celeb_a_import.read_source(str(source)), str(data_dir))
  assert not (data_dir / 'celeb_a' / '2.1.0' / 'dataset_info.json').exists()


@pytest.mark.slow
def test_cli_reports_a_broken_zip_and_exits_1(tmp_path):
  source = tmp_path / 'src'
  celeb_a_synthetic.write_release(str(source), 2, 0, 1, annotations=False)
  zip_path = source / celeb_a_import.IMAGES_ZIP
  zip_path.write_bytes(zip_path.read_bytes()[:100])
  result = subprocess.run(
      [sys.executable, '-m', 'gan_aec.prepare_data', '--dataset=celeb_a',
       f'--source_dir={source}', f'--data_dir={tmp_path / "tfds"}'],
      capture_output=True, text=True, check=False, timeout=300)
  assert result.returncode == 1
  assert 'img_align_celeba.zip is not a readable zip file' in result.stderr
  assert 'Nothing was written' in result.stderr
  assert not (tmp_path / 'tfds').exists()


@pytest.mark.slow
@pytest.mark.parametrize('model, variant, size, figure, metric', [
    ('dcgan', 'celeb_a', 28, 'samples.png', 'eval_d_real'),
    ('dcgan', 'celeb_a64', 64, 'samples.png', 'eval_d_real'),
    ('vae', 'celeb_a', 28, 'manifold.png', 'eval_neg_elbo'),
    ('denoising_autoencoder', 'celeb_a', 28, 'denoising.png', 'eval_psnr'),
])
def test_each_model_trains_end_to_end_on_the_imported_files(imported, tmp_path, model, variant,
                                                            size, figure, metric):
  _, data_dir, _ = imported
  config = config_lib.load_config(model, f'{variant},smoke')
  assert config.get('image_size', 28) == size and config.dataset.name == 'celeb_a'
  config.dataset.data_dir = data_dir
  config.dataset.cache_dir = str(tmp_path / 'cache')
  config.num_train_steps = 2
  final = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert np.isfinite(final[metric])
  assert os.path.exists(tmp_path / 'run' / 'figures' / figure)
  assert sorted(os.listdir(tmp_path / 'cache')) == [f'celeb_a-2.1.0-test-crop108-{size}px.npy',
                                                    f'celeb_a-2.1.0-train-crop108-{size}px.npy']
  start = helpers.read_metrics(str(tmp_path / 'run'))[0]
  assert start['dataset.name'] == 'celeb_a' and start['train_examples'] == 24
