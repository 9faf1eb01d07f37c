"""Reads CelebA's official files into the TFDS `celeb_a` dataset, offline (`prepare_data` runs it).

The official release (mmlab.ie.cuhk.edu.hk/projects/CelebA.html) has, in one folder or in its
`Img/`, `Anno/` and `Eval/` subfolders:
  img_align_celeba.zip or img_align_celeba/   202,599 aligned 178x218 JPEGs, 000001.jpg ...
  list_eval_partition.txt                     `000001.jpg 0` per image: 0 train, 1 validation,
                                              2 test
  list_attr_celeba.txt                        optional: count, 40 attribute names, then +-1 rows
  list_landmarks_align_celeba.txt             optional: count, 10 coordinate names, then rows
  identity_CelebA.txt                         optional: `000001.jpg 2880` per image
Everything is checked before anything is written (the JPEGs' headers as they are read), so a
missing or malformed file stops the import with its name. The JPEG bytes are stored unchanged, with
exactly the features of TFDS's own `celeb_a` builder, so `tfds.load('celeb_a', data_dir=...)` reads
the result. Annotation files that are absent are stored as placeholders (attributes False,
landmarks and identity -1) and said so in the dataset's description and in the import's output.
"""

from __future__ import annotations

import dataclasses
import io
import os
import zipfile
from typing import Iterator

import numpy as np

from gan_aec.errors import CelebAFormatError

IMAGES_ZIP = 'img_align_celeba.zip'
IMAGES_DIR = 'img_align_celeba'
PARTITION_FILE = 'list_eval_partition.txt'
ATTR_FILE = 'list_attr_celeba.txt'
LANDMARKS_FILE = 'list_landmarks_align_celeba.txt'
IDENTITY_FILE = 'identity_CelebA.txt'
SPLITS = {0: 'train', 1: 'validation', 2: 'test'}
IMAGE_SIZE_WH = (178, 218)
MISSING_INT = -1  # Landmarks and identity when their file is absent.


def find_file(source_dir: str, name: str) -> str | None:
  """source_dir/name, or source_dir/<subfolder>/name (the release's Img/, Anno/, Eval/)."""
  direct = os.path.join(source_dir, name)
  if os.path.exists(direct):
    return direct
  for sub in sorted(os.listdir(source_dir)):
    candidate = os.path.join(source_dir, sub, name)
    if os.path.isdir(os.path.join(source_dir, sub)) and os.path.exists(candidate):
      return candidate
  return None


def read_partition(path: str) -> dict[str, list[str]]:
  """list_eval_partition.txt -> {'train': [names], 'validation': [...], 'test': [...]}, sorted."""
  splits = {name: [] for name in SPLITS.values()}
  with open(path, encoding='utf-8') as f:
    for line_no, line in enumerate(f, 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) != 2 or fields[1] not in ('0', '1', '2') or not fields[0].endswith('.jpg'):
        raise CelebAFormatError(f'{path}, line {line_no}: expected `<name>.jpg <0|1|2>`, got '
                                f'{line.strip()!r}.')
      splits[SPLITS[int(fields[1])]].append(fields[0])
  if not splits['train'] or not splits['test']:
    raise CelebAFormatError(f'{path} lists no train (0) or no test (2) images.')
  return {name: sorted(files) for name, files in splits.items()}


def read_table(path: str, headings: list[str], *, has_header: bool) -> dict[str, list[int]]:
  """An annotation file -> {image name: values in the order of `headings`}."""
  with open(path, encoding='utf-8') as f:
    lines = f.read().splitlines()
  body = lines
  if has_header:
    if len(lines) < 2 or lines[1].split() != headings:
      raise CelebAFormatError(f'{path}: line 2 must name the {len(headings)} columns '
                              f'{" ".join(headings[:3])} ...; this is not the official file.')
    body = lines[2:]
  table = {}
  for line_no, line in enumerate(body, 3 if has_header else 1):
    fields = line.split()
    if not fields:
      continue
    try:
      values = [int(v) for v in fields[1:]]
    except ValueError:
      values = []
    if len(values) != len(headings):
      raise CelebAFormatError(f'{path}, line {line_no}: expected a name and {len(headings)} '
                              f'integers, got {line.strip()!r}.')
    table[fields[0]] = values
  return table


class ImageSource:
  """The JPEGs, from the extracted folder or straight from the zip."""

  def __init__(self, source_dir: str):
    folder = find_file(source_dir, IMAGES_DIR)
    archive = find_file(source_dir, IMAGES_ZIP)
    self._zip, self._members, self._folder = None, {}, None
    if folder and os.path.isdir(folder):
      self._folder = folder
      self.where = folder
      self.names = {n for n in os.listdir(folder) if n.endswith('.jpg')}
    elif archive:
      try:
        self._zip = zipfile.ZipFile(archive)
      except zipfile.BadZipFile as e:
        raise CelebAFormatError(f'{archive} is not a readable zip file ({e}).') from e
      self._members = {os.path.basename(m): m for m in self._zip.namelist() if m.endswith('.jpg')}
      self.where = archive
      self.names = set(self._members)
    else:
      raise CelebAFormatError(
          f'{source_dir} has neither {IMAGES_ZIP} nor an extracted {IMAGES_DIR}/ folder (looked '
          'in it and in its subfolders).')

  def read(self, name: str) -> bytes:
    if self._folder:
      with open(os.path.join(self._folder, name), 'rb') as f:
        return f.read()
    try:
      return self._zip.read(self._members[name])
    except (zipfile.BadZipFile, OSError, EOFError) as e:  # zlib errors are BadZipFile or OSError.
      raise CelebAFormatError(f'{self.where}: cannot read {name} ({e}).') from e


def check_jpeg(data: bytes, name: str, where: str) -> None:
  """The bytes are a 178x218 RGB JPEG (header only; no full decode)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as image:
      fmt, size, mode = image.format, image.size, image.mode
  except Exception as e:  # pylint: disable=broad-except  (PIL raises several kinds)
    raise CelebAFormatError(f'{where}: {name} is not a readable image ({e}).') from e
  if fmt != 'JPEG' or size != IMAGE_SIZE_WH or mode != 'RGB':
    raise CelebAFormatError(f'{where}: {name} is a {size[0]}x{size[1]} {mode} {fmt}, not the '
                            'aligned 178x218 RGB JPEG of img_align_celeba.')


@dataclasses.dataclass
class CelebASource:
  """The checked official files: which images form each split, and the annotations present."""
  images: ImageSource
  splits: dict[str, list[str]]
  attributes: dict[str, list[int]] | None
  landmarks: dict[str, list[int]] | None
  identity: dict[str, list[int]] | None

  def missing_annotations(self) -> list[str]:
    return [file for file, table in ((ATTR_FILE, self.attributes), (LANDMARKS_FILE, self.landmarks),
                                     (IDENTITY_FILE, self.identity)) if table is None]


def tfds_reference():
  """TFDS's own `celeb_a` builder (no data needed): its version and features are what we write."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  reference = tfds.builder('celeb_a')
  features = reference.info.features
  return reference, list(features['attributes'].keys()), list(features['landmarks'].keys())


def read_source(source_dir: str) -> CelebASource:
  """Finds and checks the official files (all but the JPEG bodies); raises CelebAFormatError."""
  _, attr_names, landmark_names = tfds_reference()
  if not os.path.isdir(source_dir):
    raise CelebAFormatError(f'--source_dir={source_dir} is not a folder.')
  partition = find_file(source_dir, PARTITION_FILE)
  if partition is None:
    raise CelebAFormatError(f'{source_dir} has no {PARTITION_FILE} (the official train/validation/'
                            'test split; looked in it and in its subfolders).')
  splits = read_partition(partition)
  images = ImageSource(source_dir)
  listed = [name for names in splits.values() for name in names]
  missing = sorted(set(listed) - images.names)
  if missing:
    raise CelebAFormatError(f'{images.where} lacks {len(missing)} of the {len(listed)} images that '
                            f'{PARTITION_FILE} lists, e.g. {", ".join(missing[:3])}.')

  def table(file: str, headings: list[str], has_header: bool):
    path = find_file(source_dir, file)
    if path is None:
      return None
    rows = read_table(path, headings, has_header=has_header)
    lacking = [name for name in listed if name not in rows]
    if lacking:
      raise CelebAFormatError(f'{path} has no row for {len(lacking)} listed images, e.g. '
                              f'{", ".join(lacking[:3])}.')
    return rows

  return CelebASource(images=images, splits=splits,
                      attributes=table(ATTR_FILE, attr_names, True),
                      landmarks=table(LANDMARKS_FILE, landmark_names, True),
                      identity=table(IDENTITY_FILE, ['Identity_No'], False))


def examples(source: CelebASource, split: str, attr_names: list[str],
             landmark_names: list[str]) -> Iterator[tuple[str, dict]]:
  """(file name, TFDS celeb_a example) for each image of the split, in file-name order."""
  for name in source.splits[split]:
    data = source.images.read(name)
    check_jpeg(data, name, source.images.where)
    attrs = source.attributes[name] if source.attributes else [-1] * len(attr_names)
    marks = source.landmarks[name] if source.landmarks else [MISSING_INT] * len(landmark_names)
    identity = source.identity[name][0] if source.identity else MISSING_INT
    yield name, {
        'image': data,  # The original JPEG bytes, stored unchanged.
        'attributes': {k: bool(v > 0) for k, v in zip(attr_names, attrs)},
        'landmarks': {k: np.int64(v) for k, v in zip(landmark_names, marks)},
        'identity': {'Identity_No': np.int64(identity)},
    }


def write(source: CelebASource, data_dir: str | None) -> tuple[str, str]:
  """Writes TFDS `celeb_a` (TFDS's version and features) into data_dir; returns (path, version)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  reference, attr_names, landmark_names = tfds_reference()
  features = reference.info.features
  missing = source.missing_annotations()
  note = f' Absent at import, stored as placeholders: {", ".join(missing)}.' if missing else ''
  builder = tfds.dataset_builders.store_as_tfds_dataset(
      name='celeb_a', version=str(reference.version), features=features,
      split_datasets={split: examples(source, split, attr_names, landmark_names)
                      for split in SPLITS.values() if source.splits[split]},
      data_dir=data_dir, config=None,
      description=f'CelebA imported by gan_aec.prepare_data from the official files.{note}',
      homepage='http://mmlab.ie.cuhk.edu.hk/projects/CelebA.html',
      disable_shuffling=True)
  return str(builder.data_dir), str(reference.version)
