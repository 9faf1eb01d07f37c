"""CelebA faces for training: TFDS `celeb_a`, center-cropped, resized, and cached once as uint8.

Each aligned 178x218 (W x H) photo is cut to its central 108x108 face (rows 55-162, columns 35-142;
the crop of the DCGAN literature and of the original report), resized to `image_size` (bilinear with
antialiasing, so a 108 -> 28 or 64 reduction averages rather than aliases) and rounded to uint8.

JPEG work happens once per (split, image_size): the first run decodes the split with a parallel,
prefetched tf.data pipeline (only the crop window of each JPEG is decoded) and writes the result as
an .npy file; every later epoch and run maps that file (read-only np.memmap) and gathers batches
from it like the in-memory MNIST, so there is no per-step JPEG decode and batches stay a pure
function of (seed, step). The file goes to `<data_dir>/gan_aec_cache/` unless `cache_dir` is given;
the 162,770 training faces take 383 MB at 28x28 and 2.0 GB at 64x64.

TFDS downloads CelebA from Google Drive, which often refuses even online; the offline route is
`python -m gan_aec.prepare_data --dataset=celeb_a --source_dir=DIR` from the official files.
"""

from __future__ import annotations

import os
import time

from absl import logging
import numpy as np

from gan_aec.data import default_cache_dir
from gan_aec.data.mnist import can_reach_download_server
from gan_aec.data.splits import Data, Split
from gan_aec.errors import DatasetUnavailableError

TFDS_NAME = 'celeb_a'
CROP_SIZE = 108  # The central face crop of the 178x218 aligned images.
SOURCE_TFDS = 'tfds'
_DOWNLOAD_HOST = ('drive.google.com', 443)  # Where TFDS's `celeb_a` downloads from.
_LOG_EVERY = 20_000  # Cache-building progress, in images.

IMPORT_HINT = (
    "TFDS's CelebA download (Google Drive) often fails even online. Import the official files "
    'instead: put img_align_celeba.zip (or the extracted img_align_celeba/ folder) and '
    'list_eval_partition.txt (plus list_attr_celeba.txt and list_landmarks_align_celeba.txt when '
    'you have them) in a folder and run\n'
    '  python -m gan_aec.prepare_data --dataset=celeb_a --source_dir=FOLDER --data_dir=TFDS_DIR\n'
    'then pass --config.dataset.data_dir=TFDS_DIR.')


def crop_and_resize(jpeg, image_size: int, crop_size: int = CROP_SIZE):
  """JPEG bytes (a scalar tf.string) -> uint8 tf.Tensor [image_size, image_size, 3].

  Decodes only the central crop_size x crop_size window, then resizes it (bilinear, antialiased).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape = tf.image.extract_jpeg_shape(jpeg)
  tf.debugging.assert_greater_equal(
      shape[:2], crop_size, message=f'a CelebA image is smaller than the {crop_size}-pixel crop')
  window = tf.stack([(shape[0] - crop_size) // 2, (shape[1] - crop_size) // 2, crop_size,
                     crop_size])
  image = tf.io.decode_and_crop_jpeg(jpeg, window, channels=3)
  if image_size != crop_size:
    image = tf.image.resize(image, (image_size, image_size), method='bilinear', antialias=True)
    image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
  return tf.cast(image, tf.uint8)


def cache_path(cache_dir: str, split: str, image_size: int, version: str,
               crop_size: int = CROP_SIZE) -> str:
  return os.path.join(cache_dir,
                      f'{TFDS_NAME}-{version}-{split}-crop{crop_size}-{image_size}px.npy')


def decoded_images(builder, split: str, image_size: int, crop_size: int = CROP_SIZE,
                   chunk: int = 1024):
  """Yields uint8 [<=chunk, S, S, 3] arrays of the split in TFDS order (parallel decode,
  prefetched)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  ds = ds.map(lambda ex: crop_and_resize(ex['image'], image_size, crop_size),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  options = tf.data.Options()
  options.threading.private_threadpool_size = os.cpu_count() or 1
  ds = ds.with_options(options).batch(chunk).prefetch(2)
  yield from tfds.as_numpy(ds)


def _num_examples(builder, split: str) -> int | None:
  try:
    return int(builder.info.splits[split].num_examples) or None
  except (KeyError, TypeError):
    return None


def build_cache(builder, split: str, image_size: int, path: str,
                crop_size: int = CROP_SIZE) -> np.ndarray:
  """Decodes the split once and writes it to `path` (atomically); returns the images it wrote."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.tmp-{os.getpid()}'
  expected = _num_examples(builder, split)
  start, done, chunks, out = time.perf_counter(), 0, [], None
  shape = (image_size, image_size, 3)
  if expected:
    out = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.uint8, shape=(expected, *shape))
  try:
    logging.info('Decoding CelebA %s once (crop %d, resize to %d) into %s ...', split, crop_size,
                 image_size, path)
    for images in decoded_images(builder, split, image_size, crop_size):
      if out is not None:
        if done + len(images) > expected:
          raise DatasetUnavailableError(
              f'CelebA {split} has more images than its dataset_info.json says ({expected}); the '
              f'TFDS data in {builder.data_dir} is inconsistent. Re-import it.')
        out[done:done + len(images)] = images
      else:
        chunks.append(images)
      if (done + len(images)) // _LOG_EVERY > done // _LOG_EVERY:
        logging.info('  %d images, %.0f images/s', done + len(images),
                     (done + len(images)) / (time.perf_counter() - start))
      done += len(images)
    if out is not None:
      if done != expected:
        raise DatasetUnavailableError(
            f'CelebA {split} yielded {done} images, but its dataset_info.json says {expected}; the '
            f'TFDS data in {builder.data_dir} is incomplete. Re-import it.')
      out.flush()
      del out
    else:
      images = np.concatenate(chunks) if chunks else np.zeros((0, *shape), np.uint8)
      with open(tmp, 'wb') as f:
        np.save(f, images)
  except BaseException as e:
    if os.path.exists(tmp):
      os.remove(tmp)  # Nothing half-built is left behind.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if isinstance(e, tf.errors.OpError):
      raise DatasetUnavailableError(
          f'CelebA {split} in {builder.data_dir} has an image that cannot be decoded and cropped '
          f'({e.message.splitlines()[0]}). Re-import the dataset.') from e
    raise
  os.replace(tmp, path)  # Atomic: a killed run never leaves a half-written cache under `path`.
  logging.info('Cached %d CelebA %s images at %dx%d in %.1f s.', done, split, image_size,
               image_size, time.perf_counter() - start)
  return np.load(path, mmap_mode='r')


def _open_cache(path: str, image_size: int, expected: int | None) -> np.ndarray | None:
  """The cached split, or None when it is missing or does not match (then it is rebuilt)."""
  if not os.path.exists(path):
    return None
  try:
    images = np.load(path, mmap_mode='r')
  except (ValueError, OSError) as e:
    logging.warning('The CelebA cache %s is unreadable (%s); rebuilding it.', path, e)
    return None
  if (images.dtype != np.uint8 or images.shape[1:] != (image_size, image_size, 3)
      or (expected and len(images) != expected)):
    logging.warning('The CelebA cache %s holds %s %s, not %s x %dx%dx3 uint8; rebuilding it.',
                    path, images.shape, images.dtype, expected or 'N', image_size, image_size)
    return None
  return images


def load_split(builder, split: str, image_size: int, cache_dir: str) -> Split:
  """One split as uint8 [N, S, S, 3] mapped from its cache (built on first use); no labels."""
  path = cache_path(cache_dir, split, image_size, str(builder.version))
  images = _open_cache(path, image_size, _num_examples(builder, split))
  if images is None:
    images = build_cache(builder, split, image_size, path)
  return Split(images=images, labels=None)


def load(data_dir: str | None = None, *, image_size: int, download: bool = True,
         cache_dir: str | None = None) -> Data:
  """CelebA's train and test splits, cropped and resized to image_size, as uint8 [N, S, S, 3].

  Args:
    data_dir: TFDS data dir; None means TFDS's default.
    image_size: output height and width (28 as in the original report, 64 as in the DCGAN paper).
    download: let TFDS try its download when `celeb_a` is not in data_dir and the server answers.
    cache_dir: where the decoded splits are cached; default `<data_dir>/gan_aec_cache`.

  Raises:
    DatasetUnavailableError: CelebA is not in data_dir and cannot be downloaded; the message gives
      the offline import command.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
  if not builder.is_prepared():
    where = data_dir or 'the default TFDS data dir'
    if not download:
      raise DatasetUnavailableError(f'TFDS has no `celeb_a` in {where} and dataset.download is '
                                    f'False.\n{IMPORT_HINT}')
    if not can_reach_download_server(host=_DOWNLOAD_HOST):
      raise DatasetUnavailableError(f'TFDS has no `celeb_a` in {where} and cannot download it '
                                    f'(no connection to {_DOWNLOAD_HOST[0]}).\n{IMPORT_HINT}')
    try:
      builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      raise DatasetUnavailableError(
          f'TFDS could not download `celeb_a` into {where}: {type(e).__name__}: {e}\n'
          f'{IMPORT_HINT}') from e
  cache_dir = cache_dir or default_cache_dir(data_dir or builder.data_dir_root)
  return Data(train=load_split(builder, 'train', image_size, cache_dir),
              test=load_split(builder, 'test', image_size, cache_dir),
              source=SOURCE_TFDS)
