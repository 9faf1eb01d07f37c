"""Training and evaluation batches from a split held in memory (MNIST is 47 MB as uint8).

The batch of training step `s` is a pure function of (seed, s): epoch e = s // steps_per_epoch is
shuffled by a permutation seeded with (seed, e), and the last incomplete batch of each epoch is
dropped. So resuming at any step reproduces the uninterrupted run's batches exactly, with no
iterator state to checkpoint, and every process of a multi-host run agrees on the global batch and
takes its own contiguous slice of it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from gan_aec.data.splits import Split


ValueRange = tuple[float, float]
UNIT_RANGE: ValueRange = (0.0, 1.0)  # The autoencoders' and the VAE's inputs.
TANH_RANGE: ValueRange = (-1.0, 1.0)  # The GAN's: its generator ends in tanh.


def to_float(images_uint8: np.ndarray, value_range: ValueRange = UNIT_RANGE) -> np.ndarray:
  """uint8 [..., H, W, C] in 0..255 -> float32 in value_range (0 -> low, 255 -> high)."""
  low, high = value_range
  scale = np.float32((high - low) / 255.0)
  images = np.asarray(images_uint8).astype(np.float32) * scale
  return images + np.float32(low) if low else images


class TrainBatches:
  """Shuffled training batches of `batch_size` (the global batch) indexed by step."""

  def __init__(self, split: Split, batch_size: int, seed: int, *, process_index: int = 0,
               process_count: int = 1, value_range: ValueRange = UNIT_RANGE):
    if batch_size > len(split):
      raise ValueError(f'batch_size {batch_size} is larger than the training split '
                       f'({len(split)} images). Lower --config.batch_size.')
    if batch_size % process_count:
      raise ValueError(f'batch_size {batch_size} is not divisible by the {process_count} '
                       'processes.')
    self.split = split
    self.batch_size = batch_size
    self.seed = seed
    self.value_range = value_range
    self.steps_per_epoch = len(split) // batch_size
    self.local_batch_size = batch_size // process_count
    self._local_slice = slice(process_index * self.local_batch_size,
                              (process_index + 1) * self.local_batch_size)
    self._cached_epoch, self._cached_perm = -1, None

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._cached_epoch:
      rng = np.random.default_rng([self.seed, epoch])
      self._cached_epoch, self._cached_perm = epoch, rng.permutation(len(self.split))
    return self._cached_perm

  def indices(self, step: int) -> np.ndarray:
    """Indices into the split of the global batch for `step` (0-based)."""
    epoch, position = divmod(step, self.steps_per_epoch)
    start = position * self.batch_size
    return self._permutation(epoch)[start:start + self.batch_size]

  def get(self, step: int, part: slice | None = None) -> dict[str, np.ndarray]:
    """The `part` of step's global batch (default: this process's slice): 'image' float32
    [b, H, W, C] in value_range, and 'label' int32 [b] when the split has labels."""
    idx = self.indices(step)[self._local_slice if part is None else part]
    return _batch(self.split, idx, self.value_range)


def _batch(split: Split, idx: np.ndarray, value_range: ValueRange) -> dict[str, np.ndarray]:
  batch = {'image': to_float(split.images[idx], value_range)}
  if split.labels is not None:
    batch['label'] = split.labels[idx].astype(np.int32)
  return batch


def eval_batches(split: Split, batch_size: int, *, process_index: int = 0,
                 process_count: int = 1,
                 value_range: ValueRange = UNIT_RANGE) -> Iterator[dict[str, np.ndarray]]:
  """The whole split in order, in global batches of `batch_size`, the last one padded.

  Yields this process's slice of each global batch: 'image' float32 [b, H, W, C] in value_range,
  'label' int32 [b] (when the split has labels) and 'mask' bool [b], False on the padding.
  """
  local = batch_size // process_count
  n = len(split)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)[process_index * local:(process_index + 1) * local]
    mask = idx < n
    idx = np.where(mask, idx, 0)
    yield {**_batch(split, idx, value_range), 'mask': mask}


def map_in_batches(fn: Callable[[np.ndarray], Any], inputs: np.ndarray, batch_size: int = 500,
                   *, pad: bool = True) -> Any:
  """fn over `inputs` in batches of `batch_size` along axis 0, outputs concatenated on the host.

  fn returns an array, or a tuple of arrays (or None, passed through as None), with the batch on
  axis 0. With `pad` the last batch is padded with zeros to the full size (and the padding's
  outputs dropped), so a jitted fn compiles once; fewer inputs than `batch_size` are one batch of
  their own size (not padded to it).
  """
  batch_size = max(1, min(batch_size, len(inputs)))
  outputs = []
  for start in range(0, len(inputs), batch_size):
    chunk = np.asarray(inputs[start:start + batch_size])
    size = len(chunk)
    if pad and size < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - size, *chunk.shape[1:]), chunk.dtype)])
    out = fn(chunk)
    parts = out if isinstance(out, tuple) else (out,)
    outputs.append([None if p is None else np.asarray(p)[:size] for p in parts])
  merged = tuple(None if any(o[i] is None for o in outputs)
                 else np.concatenate([o[i] for o in outputs])
                 for i in range(len(outputs[0])))
  return merged if len(merged) > 1 else merged[0]
