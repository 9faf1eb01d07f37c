r"""Imports datasets into a TFDS data dir from local files, with no network.

  python -m gan_aec.prepare_data --dataset=mnist --source_dir=DIR --data_dir=TFDS_DIR [--holdout=N]
  python -m gan_aec.prepare_data --dataset=celeb_a --source_dir=DIR --data_dir=TFDS_DIR

MNIST: DIR holds the official IDX files (gan_aec.data.mnist_import). With only the test files (as
in the bundled digits), `--holdout=N` makes the last N images `test` and the rest `train`
(N=2000 matches the bundled-digits fallback); without it the import refuses, so a partial set is
never mistaken for MNIST.
CelebA: DIR holds the official release's `img_align_celeba.zip` (or the extracted folder) and
`list_eval_partition.txt`, plus the annotation files when present (gan_aec.data.celeb_a_import).
The result is TFDS's own dataset, so `--config.dataset.data_dir=TFDS_DIR` trains on it. Every file
is checked before anything is written; a bad one stops the import with its name (exit status 1).
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from gan_aec import errors
from gan_aec.data import celeb_a_import, mnist_import

_DATASET = flags.DEFINE_enum('dataset', 'mnist', ['mnist', 'celeb_a'], 'Which dataset to import.')
_SOURCE_DIR = flags.DEFINE_string('source_dir', None, 'Folder with the official files.',
                                  required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data dir to write into (default: TFDS '
                                "default, ~/tensorflow_datasets).")
_HOLDOUT = flags.DEFINE_integer('holdout', None, 'When only the t10k files are present: make the '
                                'last N images `test` and the rest `train`.')


def import_mnist(source_dir: str, data_dir: str | None, holdout: int | None) -> str:
  """Imports MNIST; returns what was written, in words."""
  splits = mnist_import.mnist_splits(source_dir, holdout)
  path = mnist_import.write_mnist(splits, data_dir)
  sizes = ', '.join(f'{name} {len(images)}' for name, (images, _) in splits.items())
  how = (f' (the last {holdout} test-file images are `test`, the rest `train`)'
         if holdout else '')
  return (f'Wrote TFDS mnist {mnist_import.MNIST_VERSION} to {path}: {sizes}{how}.\n'
          f'Train on it with --config.dataset.data_dir={data_dir or "(TFDS default)"}')


def import_celeb_a(source_dir: str, data_dir: str | None, holdout: int | None) -> str:
  """Imports CelebA; returns what was written, in words."""
  if holdout is not None:
    raise errors.DataImportError('--holdout is for MNIST only; CelebA comes with its official '
                                 'split.')
  source = celeb_a_import.read_source(source_dir)
  path, version = celeb_a_import.write(source, data_dir)
  sizes = ', '.join(f'{name} {len(names)}' for name, names in source.splits.items() if names)
  missing = source.missing_annotations()
  note = (f'Note: {", ".join(missing)} not found; their features hold placeholders (attributes '
          f'False, landmarks and identity {celeb_a_import.MISSING_INT}).\n' if missing else '')
  return (f'{note}Wrote TFDS celeb_a {version} to {path}: {sizes}.\n'
          f'Train on it with --config=configs/dcgan.py:celeb_a '
          f'--config.dataset.data_dir={data_dir or "(TFDS default)"}')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  run = import_mnist if _DATASET.value == 'mnist' else import_celeb_a
  try:
    print(run(_SOURCE_DIR.value, _DATA_DIR.value, _HOLDOUT.value))
  except errors.UserError as e:
    print(f'error: {e}\nNothing was written.', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
