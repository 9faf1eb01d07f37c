"""Reading and validating MNIST's IDX files (the format of the official download).

An IDX file is a big-endian header (magic number, then one uint32 size per dimension) followed by
the raw uint8 data. We check the magic, the sizes and the data length, so a truncated download or
a mislabeled file stops with a message that names it instead of training on garbage.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from gan_aec.errors import IdxFormatError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions (count, rows, cols).
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension (count).


def _read_bytes(path: str) -> bytes:
  try:
    if path.endswith('.gz'):
      with gzip.open(path, 'rb') as f:
        return f.read()
    with open(path, 'rb') as f:
      return f.read()
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise IdxFormatError(f'{path}: cannot be read as an IDX file ({e}). '
                         'Download it again.') from e


def _parse(path: str, expected_magic: int, ndim: int) -> np.ndarray:
  data = _read_bytes(path)
  header_len = 4 * (1 + ndim)
  if len(data) < header_len:
    raise IdxFormatError(f'{path}: only {len(data)} bytes, shorter than an IDX header. '
                         'The file is truncated; download it again.')
  magic, *dims = struct.unpack('>' + 'I' * (1 + ndim), data[:header_len])
  if magic != expected_magic:
    raise IdxFormatError(
        f'{path}: magic number {magic}, expected {expected_magic} '
        f'({"images" if expected_magic == IMAGES_MAGIC else "labels"} file). '
        'Is it the right file?')
  expected_len = header_len + int(np.prod(dims))
  if len(data) != expected_len:
    raise IdxFormatError(
        f'{path}: header announces shape {tuple(dims)} ({expected_len} bytes) but the file has '
        f'{len(data)} bytes. The file is truncated or corrupt; download it again.')
  return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def read_images(path: str) -> np.ndarray:
  """Returns uint8 images [N, 28, 28, 1] from an IDX3 file (optionally gzipped)."""
  images = _parse(path, IMAGES_MAGIC, ndim=3)
  if images.shape[1:] != (28, 28):
    raise IdxFormatError(f'{path}: images are {images.shape[1:]}, MNIST digits are 28x28.')
  return images[..., None]


def read_labels(path: str) -> np.ndarray:
  """Returns int64 labels [N] in 0..9 from an IDX1 file (optionally gzipped)."""
  labels = _parse(path, LABELS_MAGIC, ndim=1)
  if labels.size and labels.max() > 9:
    raise IdxFormatError(f'{path}: label {labels.max()} is not a digit 0-9.')
  return labels.astype(np.int64)


def find_file(source_dir: str, stem: str) -> str | None:
  """Finds `stem` or `stem.gz` in source_dir (also the `stem.idx3-ubyte`-style names)."""
  for name in (stem, stem + '.gz', stem.replace('-idx', '.idx'),
               stem.replace('-idx', '.idx') + '.gz'):
    path = os.path.join(source_dir, name)
    if os.path.exists(path):
      return path
  return None


def read_split(source_dir: str, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
  """Reads `{prefix}-images-idx3-ubyte[.gz]` and its labels; None if neither file is there."""
  images_path = find_file(source_dir, f'{prefix}-images-idx3-ubyte')
  labels_path = find_file(source_dir, f'{prefix}-labels-idx1-ubyte')
  if images_path is None and labels_path is None:
    return None
  if images_path is None or labels_path is None:
    missing = (f'{prefix}-images-idx3-ubyte' if images_path is None
               else f'{prefix}-labels-idx1-ubyte')
    raise IdxFormatError(f'{source_dir}: found one of the {prefix!r} files but not {missing}[.gz].')
  images, labels = read_images(images_path), read_labels(labels_path)
  if len(images) != len(labels):
    raise IdxFormatError(f'{images_path} has {len(images)} images but {labels_path} has '
                         f'{len(labels)} labels.')
  return images, labels
