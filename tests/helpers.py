"""Shared test helpers: the repository's root, generated IDX files and workdir readers."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import struct

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent  # The checkout the tests run in.


def write_idx(path: str, array: np.ndarray) -> str:
  """Writes a uint8 array as an IDX file (gzipped when path ends in .gz): 3-D images or 1-D labels."""
  magic = 2051 if array.ndim == 3 else 2049
  data = struct.pack('>' + 'I' * (1 + array.ndim), magic, *array.shape) + array.astype(
      np.uint8).tobytes()
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(data)
  return path


def write_mnist_files(folder: str, num_train: int | None, num_test: int, seed: int = 0) -> dict:
  """Random digits in the official MNIST file layout; returns the arrays written."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  written = {}
  for prefix, n in (('train', num_train), ('t10k', num_test)):
    if n is None:
      continue
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    write_idx(os.path.join(folder, f'{prefix}-images-idx3-ubyte.gz'), images)
    write_idx(os.path.join(folder, f'{prefix}-labels-idx1-ubyte.gz'), labels)
    written[prefix] = (images, labels)
  return written


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [json.loads(line) for line in f]


TIMING_KEYS = ('steps_per_s', 'images_per_s')


def committed_steps(workdir: str) -> list[int]:
  """Steps of the committed checkpoints in workdir/checkpoints (half-written ones excluded)."""
  from gan_aec.run import checkpointing  # pylint: disable=g-import-not-at-top
  return checkpointing.committed_steps(os.path.join(workdir, 'checkpoints'))


def final_state(workdir: str):
  """(step, pytree) of the latest checkpoint as saved, onto this process's first device (so a
  checkpoint written on 8 devices reads in a 1-device test process)."""
  from gan_aec.run import checkpointing  # pylint: disable=g-import-not-at-top
  step = committed_steps(workdir)[-1]
  return step, checkpointing.restore_on_one_device(os.path.join(workdir, 'checkpoints'), step)


def scalar_records(workdir: str) -> list[dict]:
  """metrics.jsonl's metric records without run_start events and wall-clock rates."""
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS}
          for r in read_metrics(workdir) if 'event' not in r]


def pooled_pixels_extractor():
  """A user-supplied extractor for tests (python:tests.helpers:pooled_pixels_extractor): 7x7
  average-pooled pixels as features, no logits."""
  def embed(images):
    b, h, w, c = images.shape
    return images.reshape(b, 7, h // 7, 7, w // 7, c).mean(axis=(2, 4)).reshape(b, -1)
  embed.version = 'v1'
  return embed
