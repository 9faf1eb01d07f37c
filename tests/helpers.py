"""Shared test helpers: the repository's root, generated IDX files and workdir readers."""

from __future__ import annotations

import gzip
import json
import os
import pathlib
import struct

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent  # The checkout the tests run in.


def write_idx(path: str, array: np.ndarray) -> str:
  """Writes a uint8 array as an IDX file (gzipped when path ends in .gz): 3-D images or 1-D
  labels."""
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
  """metrics.jsonl of a workdir (local, or in a bucket)."""
  from etils import epath  # pylint: disable=g-import-not-at-top
  text = (epath.Path(workdir) / 'metrics.jsonl').read_text(encoding='utf-8')
  return [json.loads(line) for line in text.splitlines() if line]


TIMING_KEYS = ('steps_per_s', 'images_per_s', 'wall_time')


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


# Per-channel biases that feed a BatchNorm (the seed's DCGAN keeps them): BatchNorm subtracts the
# per-channel batch mean, so their gradient is exactly zero and what reaches them is float rounding
# noise, which Adam scales up to a full lr-sized step in a random direction. They do not change the
# function and are not comparable between two reduction orders; every other parameter and
# statistic is.
FEEDS_BATCHNORM = {'generator': ('ConvTranspose_0', 'ConvTranspose_1'),
                   'discriminator': ('Conv_1', 'Conv_2')}


def _key_name(key) -> str:
  for attribute in ('key', 'name', 'idx'):  # DictKey, GetAttrKey, SequenceKey / FlattenedIndexKey.
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def leaves_by_path(tree) -> dict[tuple[str, ...], np.ndarray]:
  """{path: leaf} of a pytree, paths as tuples of names, so that a live state (dataclasses,
  namedtuples) and the same state read back from a checkpoint (nested dicts) compare alike."""
  return {tuple(_key_name(k) for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _feeds_batchnorm(path: tuple[str, ...]) -> bool:
  return any(net in path and layer in path and path[-1] == 'bias'
             for net, layer_names in FEEDS_BATCHNORM.items() for layer in layer_names)


def assert_same_state(state_a, state_b) -> None:
  """Two training states with the same structure (the same leaf paths, shapes and dtypes) and
  every leaf equal to float tolerance (but the biases that feed a BatchNorm, which are rounding
  noise: their shapes still must agree)."""
  a, b = leaves_by_path(state_a), leaves_by_path(state_b)
  assert a and sorted(a) == sorted(b), sorted(set(a) ^ set(b))
  mismatches = []
  for path, x in a.items():
    y = b[path]
    assert x.shape == y.shape and x.dtype == y.dtype, (path, x.shape, y.shape, x.dtype, y.dtype)
    # Float32 sums in another order differ in the last bits; Adam and RMSprop divide a gradient
    # by its own running scale, which turns that into up to ~1e-5 on a parameter whose gradient
    # is near zero. 1e-4 is 1% of one RMSprop step at lr 1e-3.
    if not _feeds_batchnorm(path) and not np.allclose(x, y, rtol=1e-3, atol=1e-4):
      worst = np.max(np.abs(x - y) / (1e-3 * np.abs(y) + 1e-4))
      mismatches.append(f'{"/".join(path)}: {np.sum(~np.isclose(x, y, rtol=1e-3, atol=1e-4))} '
                        f'of {x.size} elements, worst at {worst:.2f}x the tolerance')
  assert not mismatches, '\n'.join(mismatches)


def assert_same_run(a, b, *, skip_eval_at=()):
  """Same final state and metrics.jsonl values; `skip_eval_at`: steps where only run `a`
  evaluated (the end of an earlier, shorter part of it)."""
  (step_a, state_a), (step_b, state_b) = final_state(a), final_state(b)
  assert step_a == step_b
  assert_same_state(state_a, state_b)
  records_a = [r for r in scalar_records(a)
               if not (r['step'] in skip_eval_at and all(k.startswith('eval_') or k == 'step'
                                                         for k in r))]
  records_b = scalar_records(b)
  keys_a, keys_b = [sorted(r) for r in records_a], [sorted(r) for r in records_b]
  assert keys_a == keys_b, next(
      ((i, ra, rb) for i, (ra, rb) in enumerate(zip(records_a, records_b))
       if sorted(ra) != sorted(rb)),
      (len(records_a), len(records_b)))
  for ra, rb in zip(records_a, records_b):
    for key in ra:
      if isinstance(ra[key], str):  # E.g. eval_extractor, the feature network's name.
        assert ra[key] == rb[key], key
      else:
        np.testing.assert_allclose(ra[key], rb[key], rtol=1e-3, atol=1e-5, err_msg=key)
