"""Layers written so that XLA:CPU stays on its fast paths (see docs in the README's performance part).

Each is a drop-in for the textbook operation it replaces and computes the same function. Their
backward passes avoid XLA:CPU's slow generic kernels (`select_and_scatter` for max-pool gradients,
gathers/scatters for resizes): a reshape followed by a reduction or a broadcast differentiates into
another reshape and broadcast, which XLA fuses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def max_pool_2x2(x_BHWC: jax.Array) -> jax.Array:
  """2x2 max pool with stride 2 and SAME padding, as `flax.linen.max_pool(x, (2, 2), (2, 2), 'SAME')`.

  Odd sizes are padded at the end (bottom/right) with -inf, which is where TensorFlow and Flax put
  SAME padding for this window, so 7x7 pools to 4x4 exactly as in the seed.
  """
  b, h, w, c = x_BHWC.shape
  ph, pw = h % 2, w % 2
  if ph or pw:
    x_BHWC = jnp.pad(x_BHWC, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=-jnp.inf)
  x = x_BHWC.reshape(b, (h + ph) // 2, 2, (w + pw) // 2, 2, c)
  return x.max(axis=(2, 4))


def nearest_resize_indices(in_size: int, out_size: int) -> np.ndarray:
  """Source index of each output pixel for TF1's `resize_nearest_neighbor` (the seed's resize).

  TF1 (align_corners=False, half_pixel_centers=False) takes floor(i * in / out); for 4 -> 7 that is
  [0, 0, 1, 1, 2, 2, 3], and for a factor 2 each pixel is repeated twice.
  """
  return np.floor(np.arange(out_size) * (in_size / out_size)).astype(np.int32)


def _resize_axis(x: jax.Array, axis: int, out_size: int) -> jax.Array:
  in_size = x.shape[axis]
  if out_size == in_size:
    return x
  if out_size % in_size == 0:
    # Integer factor: a broadcast and a reshape (backward: a reshape and a sum).
    factor = out_size // in_size
    x = jnp.expand_dims(x, axis + 1)
    shape = list(x.shape)
    shape[axis + 1] = factor
    x = jnp.broadcast_to(x, shape)
    new_shape = list(x.shape[:axis]) + [out_size] + list(x.shape[axis + 2:])
    return x.reshape(new_shape)
  # General case: multiply by a one-hot selection matrix, so the backward pass is a small matmul
  # rather than a scatter-add.
  select = np.zeros((in_size, out_size), np.float32)
  select[nearest_resize_indices(in_size, out_size), np.arange(out_size)] = 1.0
  x = jnp.moveaxis(x, axis, -1)
  x = jnp.matmul(x, jnp.asarray(select, x.dtype), precision=jax.lax.Precision.HIGHEST)
  return jnp.moveaxis(x, -1, axis)


def nearest_resize(x_BHWC: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Nearest-neighbour resize of NHWC images to `size` (height, width), with TF1's pixel rule."""
  x = _resize_axis(x_BHWC, 1, size[0])
  return _resize_axis(x, 2, size[1])
