"""Drop-in layers that keep XLA:CPU on its fast paths (docs/performance.md measures them).

Conv, ConvTranspose and Dropout take flax.linen's arguments and hold its parameters; max_pool_2x2
and nearest_resize are the report's pooling and resize. Each computes the same function as the
textbook operation it replaces. Their backward passes avoid XLA:CPU's slow generic kernels
(input-dilated convolutions, `select_and_scatter` for max-pool gradients, gathers and scatters for
resizes). The convolution forms behind Conv and ConvTranspose are in `gan_aec.layers._conv`.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gan_aec.layers import _conv

__all__ = ['Conv', 'ConvTranspose', 'Dropout', 'max_pool_2x2', 'nearest_resize']


def max_pool_2x2(x_BHWC: jax.Array) -> jax.Array:
  """2x2 max pool, stride 2, SAME padding: `flax.linen.max_pool(x, (2, 2), (2, 2), 'SAME')`.

  Odd sizes are padded at the end (bottom/right) with -inf, which is where TensorFlow and Flax put
  SAME padding for this window, so 7x7 pools to 4x4 exactly as in the original report. Written
  as two pairwise maxima: their gradient is a select, far cheaper on XLA:CPU than reduce_max's
  (or reduce_window's select_and_scatter). On exact ties the gradient is shared instead of going
  to one element; after a ReLU the only ties are at 0, where the ReLU's own gradient is 0 either
  way.
  """
  b, h, w, c = x_BHWC.shape
  ph, pw = h % 2, w % 2
  if ph or pw:
    x_BHWC = jnp.pad(x_BHWC, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=-jnp.inf)
  x = x_BHWC.reshape(b, (h + ph) // 2, 2, (w + pw) // 2, 2, c)
  rows = jnp.maximum(x[:, :, 0], x[:, :, 1])  # [B, H/2, W/2, 2, C]
  return jnp.maximum(rows[:, :, :, 0], rows[:, :, :, 1])


def nearest_resize_indices(in_size: int, out_size: int) -> np.ndarray:
  """Source index of each output pixel for TF1's `resize_nearest_neighbor` (the report's resize).

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


def _use_fast_path(implementation: str) -> bool:
  if implementation not in ('auto', 'fast', 'xla'):
    raise ValueError(f"implementation must be 'auto', 'fast' or 'xla', got {implementation!r}.")
  if implementation == 'auto':
    # The rewrites are for XLA:CPU's slow dilated convolutions; GPU/TPU libraries (cuDNN, the TPU
    # compiler) have native fast kernels for the textbook forms.
    return jax.default_backend() == 'cpu'
  return implementation == 'fast'


class _ConvLayer(nn.Module):
  """What Conv and ConvTranspose share: Flax's parameters, dtype handling and bias."""
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: int | tuple[int, int] = (1, 1)
  padding: str = 'SAME'  # Accepted for drop-in use; 'SAME' is the only padding implemented.
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  implementation: str = 'auto'

  def _convolve(self, x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                fast: bool) -> jax.Array:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x_BHWC: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, x_BHWC.shape[-1], self.features), self.param_dtype)
    dtype = self.dtype or jnp.result_type(x_BHWC, kernel)
    if not isinstance(self.padding, str) or self.padding.upper() != 'SAME':
      raise ValueError(f"padding must be 'SAME' (the only padding these layers implement), got "
                       f'{self.padding!r}; use flax.linen.{type(self).__name__} for others.')
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    if strides not in ((1, 1), (2, 2)):
      raise ValueError(f'strides must be (1, 1) or (2, 2), got {self.strides}.')
    y = self._convolve(x_BHWC.astype(dtype), kernel.astype(dtype), strides,
                       _use_fast_path(self.implementation))
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,), self.param_dtype).astype(dtype)
    return y


class Conv(_ConvLayer):
  """Drop-in for `flax.linen.Conv` (NHWC, SAME padding) whose stride-2 form avoids input dilation.

  Same arguments as flax.linen.Conv for the common cases: `features`, `kernel_size` (a pair),
  `strides` ((1, 1), (2, 2), 1 or 2), `padding` ('SAME', Flax's default), `use_bias`,
  `kernel_init`, `bias_init`, `dtype`, `param_dtype`; and the same parameters, 'kernel'
  [kh, kw, in, features] and 'bias' [features], so weights and checkpoints move between the two
  unchanged and outputs agree to float32 rounding. Input [B, H, W, in] -> [B, ceil(H / s),
  ceil(W / s), features].

  Differences from flax.linen.Conv: only 2-D NHWC inputs with a batch axis; only SAME padding and
  strides 1 or 2 (others raise ValueError); no `input_dilation`, `kernel_dilation`,
  `feature_group_count`, `mask` or `precision` arguments. Extra argument `implementation`:
  'fast' (patch matmul for stride 2, chunked kernel gradients for stride 1), 'xla'
  (lax.conv_general_dilated, the textbook form), or 'auto' (the default: fast on CPU, xla
  elsewhere).
  """

  def _convolve(self, x, kernel, strides, fast):
    if fast:
      if strides == (2, 2):
        return _conv.per_replica(_conv.conv_stride2_patches)(x, kernel)
      pads = tuple(_conv.same_pads(size, k, 1) for size, k in zip(x.shape[1:3], kernel.shape[:2]))
      return _conv.per_replica(_conv.conv_stride1_fast, pads)(x, kernel)
    return jax.lax.conv_general_dilated(x, kernel, strides, 'SAME',
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class ConvTranspose(_ConvLayer):
  """Drop-in for `flax.linen.ConvTranspose(features, k, strides=(2, 2), padding='SAME')`.

  Computes lax.conv_transpose's map (transpose_kernel=False, as Flax's default) as a stride-1
  convolution to 4x the channels plus depth-to-space (sub-pixel convolution), about 40x faster on
  XLA:CPU than the input-dilated textbook form. Same arguments as flax.linen.ConvTranspose for the
  common cases (`features`, `kernel_size`, `strides`, `padding`='SAME', `use_bias`,
  `kernel_init`, `bias_init`, `dtype`, `param_dtype`) and the same parameters, 'kernel'
  [kh, kw, in, features] and 'bias' [features]. Input [B, H, W, in] -> [B, s * H, s * W, features].

  Differences from flax.linen.ConvTranspose: `strides` defaults to (2, 2) here (Flax: 1), so
  pass strides=(1, 1) explicitly for a stride-1 layer; only 2-D NHWC inputs, SAME padding and
  strides 1 or 2; no `kernel_dilation`, `transpose_kernel=True`, `mask` or `precision`.
  `implementation` as in Conv.
  """
  strides: tuple[int, int] = (2, 2)

  def _convolve(self, x, kernel, strides, fast):
    if fast and strides == (2, 2):
      return _conv.per_replica(_conv.conv_transpose_stride2)(x, kernel)
    return jax.lax.conv_transpose(x, kernel, strides, 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def keep_mask(rng: jax.Array, keep_prob: float, shape: tuple[int, ...]) -> tuple[jax.Array, float]:
  """A Bernoulli(keep_prob) mask of `shape` from 16 random bits per element; and its exact
  keep probability, round(keep_prob * 2**16) / 2**16 (0.9 -> 0.899994).

  Each 32-bit random word gives two elements: half the random-bit generation of
  `jax.random.bernoulli` (one word per element), whose threefry hash is the costly part on CPU
  (a sizeable part of the DCGAN's step went to dropout masks: docs/performance.md).
  """
  threshold = int(round(keep_prob * 2**16))
  *lead, last = shape
  words = jax.random.bits(rng, (*lead, -(-last // 2)), jnp.uint32)
  halves = jnp.concatenate([words & 0xFFFF, words >> 16], axis=-1)[..., :last]
  return halves < threshold, threshold / 2**16


class Dropout(nn.Module):
  """Drop-in for `flax.linen.Dropout(rate)` whose mask costs half the random bits (keep_mask).

  Same arguments (`rate`, `deterministic`, `rng_collection`) and the same use: an rng in the
  'dropout' collection when not deterministic. Kept values are scaled by 1 / (the mask's exact
  keep probability), so the layer is unbiased, as Flax's is with 1 / (1 - rate). The keep
  probability is 1 - rate rounded to a multiple of 2**-16, and the masks are a different random
  stream from Flax's.
  """
  rate: float
  deterministic: bool | None = None
  rng_collection: str = 'dropout'

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    """x with each element zeroed with probability `rate` (training) or unchanged."""
    deterministic = nn.merge_param('deterministic', self.deterministic, deterministic)
    if deterministic or self.rate == 0.0:
      return x
    if self.rate == 1.0:
      return jnp.zeros_like(x)
    mask, keep = keep_mask(self.make_rng(self.rng_collection), 1.0 - self.rate, x.shape)
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))
