"""Layers written so that XLA:CPU stays on its fast paths (docs/performance.md says why).

Each is a drop-in for the textbook operation it replaces and computes the same function. Their
backward passes avoid XLA:CPU's slow generic kernels (`select_and_scatter` for max-pool gradients,
gathers/scatters for resizes): a reshape followed by a reduction or a broadcast differentiates into
another reshape and broadcast, which XLA fuses.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['Conv', 'ConvTranspose', 'Dropout', 'max_pool_2x2', 'nearest_resize']


def max_pool_2x2(x_BHWC: jax.Array) -> jax.Array:
  """2x2 max pool with stride 2 and SAME padding, as `flax.linen.max_pool(x, (2, 2), (2, 2), 'SAME')`.

  Odd sizes are padded at the end (bottom/right) with -inf, which is where TensorFlow and Flax put
  SAME padding for this window, so 7x7 pools to 4x4 exactly as in the original report. Written
  as two pairwise maxima: their gradient is a select, ~10x cheaper on XLA:CPU than reduce_max's (or reduce_window's
  select_and_scatter). On exact ties the gradient is shared instead of going to one element; after
  a ReLU the only ties are at 0, where the ReLU's own gradient is 0 either way.
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


# --------------------------------------------------------------------------------------------------
# Stride-2 convolutions without input dilation.
#
# XLA:CPU runs input-dilated convolutions on a slow generic path: `lax.conv_transpose` is one, and
# so is the input gradient of a strided `lax.conv`. Both layers below compute exactly the textbook
# layer's linear map with a single stride-1 convolution whose kernel is a static rearrangement of
# the textbook kernel (zero where a tap does not exist):
#   - transposed convolution, stride 2 = stride-1 conv to 4x the channels, then depth-to-space
#     (each of the 2x2 output phases uses its own subset of the taps: "sub-pixel convolution");
#   - convolution, stride 2 = space-to-depth of the input, then a stride-1 conv (conv_stride2).
# Forward and both gradients are then stride-1 convolutions plus reshapes, XLA:CPU's fast path.
# Conv's stride-2 form is now conv_stride2_patches (one matmul of the input's patches), faster still
# on the layers measured; conv_stride2 stays as the other dilation-free form.
# The parameters are the textbook ones (kernel [kh, kw, in, out], bias [out]), so weights map 1:1.
# --------------------------------------------------------------------------------------------------

_NO_TAP = -1


def _same_pads_conv(size: int, k: int, stride: int) -> tuple[int, int]:
  """SAME padding (low, high) of a strided convolution, as lax/TF compute it."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return total // 2, total - total // 2


def _subpixel_taps(k: int) -> tuple[np.ndarray, int, int]:
  """Tap table of a stride-2 SAME `lax.conv_transpose` along one axis.

  Output 2m + r sums x[m + d] * w[t] over taps t with d = (t + r - pad)/2 integral, where
  pad = lax's SAME padding before the dilated input. Returns table[j, r] = t of the tap that
  multiplies x[m + d_min + j] for phase r (or _NO_TAP), and the low/high padding (-d_min, d_max).
  """
  pad_len = k  # k + stride - 2 for stride 2.
  pad = k - 1 if 2 > k - 1 else int(np.ceil(pad_len / 2))
  pairs = [((t + r - pad) // 2, r, t) for r in (0, 1) for t in range(k) if (t + r - pad) % 2 == 0]
  d_min, d_max = min(p[0] for p in pairs), max(p[0] for p in pairs)
  table = np.full((d_max - d_min + 1, 2), _NO_TAP, np.int32)
  for d, r, t in pairs:
    table[d - d_min, r] = t
  return table, -d_min, d_max


def _space_to_depth_taps(k: int, pad_low: int) -> tuple[np.ndarray, int, int]:
  """Tap table of a stride-2 convolution (low padding pad_low) on a space-to-depth input.

  Output m sums x[2m + t - pad_low] * w[t]; with x'[n, p] = x[2n + p] that is x'[m + e, p] for
  t - pad_low = 2e + p. Returns table[j, p] = t multiplying x'[m + e_min + j, p], and (-e_min, e_max).
  """
  pairs = [((t - pad_low) // 2, (t - pad_low) % 2, t) for t in range(k)]
  e_min, e_max = min(p[0] for p in pairs), max(p[0] for p in pairs)
  table = np.full((e_max - e_min + 1, 2), _NO_TAP, np.int32)
  for e, p, t in pairs:
    table[e - e_min, p] = t
  return table, max(-e_min, 0), max(e_max, 0)


def _phase_starts(table: np.ndarray, k: int) -> list[int]:
  """Where each phase's taps start in a kernel axis padded by one zero tap on each side.

  Every table column is taps t0, t0 + 2, ... with _NO_TAP only where that progression leaves the
  kernel (at -1 or k, the padded zeros), so each phase is a stride-2 slice of the padded axis.
  """
  starts = []
  for col in table.T:
    j0 = int(np.argmax(col != _NO_TAP))
    start = int(col[j0]) - 2 * j0
    implied = start + 2 * np.arange(len(col))
    assert np.all((col == implied) | ((col == _NO_TAP) & ((implied == -1) | (implied == k)))), table
    starts.append(start + 1)
  return starts


def _rearrange_kernel(kernel: jax.Array, table_h: np.ndarray, table_w: np.ndarray,
                      phases_into: str) -> jax.Array:
  """kernel [kh, kw, I, O] -> the stride-1 kernel the tables describe, zero where they say _NO_TAP.

  phases_into='out': [Jh, Jw, I, (rh, rw, O)] (sub-pixel: phases are output channels);
  phases_into='in': [Jh, Jw, (ph, pw, I), O] (space-to-depth: phases are input channels).
  """
  starts_h = tuple(_phase_starts(table_h, kernel.shape[0]))
  starts_w = tuple(_phase_starts(table_w, kernel.shape[1]))
  return _rearrange_by_phases(kernel, (starts_h, len(table_h)), (starts_w, len(table_w)),
                              phases_into)


# Each phase is a stride-2 slice of the zero-padded kernel. Autodiff would differentiate that into
# four full-size interior pads and their sum (and a gather into a scatter-add): ~20-30 ms per step
# on the DCGAN's 512 -> 256 kernel. Every kernel tap lands in exactly one phase, so the gradient is
# the inverse rearrangement: interleave the two phases of each axis and drop the padding.
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _rearrange_by_phases(kernel, phases_h, phases_w, phases_into):
  (starts_h, jh), (starts_w, jw) = phases_h, phases_w
  kh, kw, i, o = kernel.shape
  padded = jnp.pad(kernel, ((1, 1), (1, 1), (0, 0), (0, 0)))
  phases = [padded[sh:sh + 2 * jh - 1:2, sw:sw + 2 * jw - 1:2] for sh in starts_h for sw in starts_w]
  if phases_into == 'out':
    return jnp.stack(phases, axis=3).reshape(jh, jw, i, 4 * o)
  return jnp.stack(phases, axis=2).reshape(jh, jw, 4 * i, o)


def _rearrange_by_phases_fwd(kernel, phases_h, phases_w, phases_into):
  return (_rearrange_by_phases(kernel, phases_h, phases_w, phases_into),
          jax.ShapeDtypeStruct(kernel.shape, kernel.dtype))


def _interleave_axis(g, axis, starts, k):
  """g has the two phases on `axis` and their J positions on axis + 1: back to padded-kernel
  positions start + 2j, then to kernel taps 0..k-1 (padded positions 1..k)."""
  lo = min(starts)
  assert sorted(starts) == [lo, lo + 1], starts  # The phases interleave.
  if starts[0] > starts[1]:
    g = jnp.flip(g, axis)
  g = jnp.moveaxis(g, axis, axis + 1)
  g = g.reshape(*g.shape[:axis], -1, *g.shape[axis + 2:])  # Padded positions lo, lo + 1, ...
  size = g.shape[axis]
  pads = [(0, 0)] * g.ndim
  pads[axis] = (max(lo - 1, 0), max(1 + k - lo - size, 0))
  g = jnp.pad(g, pads)
  start = max(1 - lo, 0)
  return jax.lax.slice_in_dim(g, start, start + k, axis=axis)


def _rearrange_by_phases_bwd(phases_h, phases_w, phases_into, kernel_shape, g):
  (starts_h, jh), (starts_w, jw) = phases_h, phases_w
  kh, kw, i, o = kernel_shape.shape
  if phases_into == 'out':
    g = g.reshape(jh, jw, i, 2, 2, o).transpose(3, 0, 4, 1, 2, 5)  # [rh, Jh, rw, Jw, I, O]
  else:
    g = g.reshape(jh, jw, 2, 2, i, o).transpose(2, 0, 3, 1, 4, 5)
  g = _interleave_axis(g, 0, starts_h, kh)  # [kh, rw, Jw, I, O]
  g = _interleave_axis(g, 1, starts_w, kw)  # [kh, kw, I, O]
  return (g.astype(kernel_shape.dtype),)


_rearrange_by_phases.defvjp(_rearrange_by_phases_fwd, _rearrange_by_phases_bwd)


def _conv_nhwc(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


# XLA:CPU computes a convolution's kernel gradient (a contraction over batch and pixels) far below
# the machine's speed once the activations outgrow the L2 cache: for 200 images of 28x28, 32 -> 32
# channels it takes ~125 ms where the forward pass takes ~24 ms. Summing the kernel gradients of
# chunks of images whose activations fit in ~2 MB is 3-5x faster (measured on 2 MB-L2 Xeons);
# the forward pass and the input gradient do not gain from chunking and stay whole. (Models without
# BatchNorm do better still by micro-batching the whole step: gan_aec.microbatching.)
_KERNEL_GRAD_CHUNK_BYTES = 2 * 2**20
_MAX_KERNEL_GRAD_CHUNKS = 64  # Bounds the unrolled graph (compile time) for very large batches.


def _kernel_grad_chunks(x: jax.Array, dy: jax.Array) -> list[slice]:
  batch = x.shape[0]
  per_image = (x[0].size + dy[0].size) * 4  # Accumulation is in float32.
  size = max(1, _KERNEL_GRAD_CHUNK_BYTES // per_image, -(-batch // _MAX_KERNEL_GRAD_CHUNKS))
  return [slice(start, min(start + size, batch)) for start in range(0, batch, size)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_stride1(x_BHWC: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (1, 1), padding)` in NHWC/HWIO whose kernel gradient
  is computed in cache-sized chunks of the batch (same values up to float32 summation order).

  padding: 'SAME', 'VALID' or ((low_h, high_h), (low_w, high_w)).
  """
  return _conv_nhwc(x_BHWC, kernel, padding)


def _conv_stride1_fwd(x, kernel, padding):
  return _conv_nhwc(x, kernel, padding), (x, kernel)


def _conv_stride1_bwd(padding, residuals, dy):
  x, kernel = residuals
  dx = jax.vjp(lambda x: _conv_nhwc(x, kernel, padding), x)[1](dy)[0]
  dkernel = None
  for chunk in _kernel_grad_chunks(x, dy):
    part = jax.vjp(lambda k, c=chunk: _conv_nhwc(x[c], k, padding), kernel)[1](dy[chunk])[0]
    part = part.astype(jnp.float32)
    dkernel = part if dkernel is None else dkernel + part
  return dx, dkernel.astype(kernel.dtype)


conv_stride1.defvjp(_conv_stride1_fwd, _conv_stride1_bwd)


# ConvTranspose's stride-1 sub-pixel convolution runs as one patch matmul from this many output
# features on: measured forward + both gradients on XLA:CPU (2-core Xeon), the DCGAN generator's
# 512->256 5x5 at 4x4, batch 64: 143 ms (convolution 224); 256->128 at 7x7: 104 ms (125); the VAE's
# 64->32 3x3 at 14x14, batch 16: 3.9 ms (5.9); but 128->1 at 14x14: 52 ms (convolution 7.7).
PATCH_MATMUL_MIN_FEATURES = 16


def _patch_matmul(x_BHWC: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """A stride-1 convolution with explicit ((low_h, high_h), (low_w, high_w)) padding as one
  matmul of the input's kh * kw shifted copies (im2col) by the kernel."""
  b, _, _, c = x_BHWC.shape
  kh, kw = kernel.shape[:2]
  x = jnp.pad(x_BHWC, ((0, 0), *padding, (0, 0)))
  out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  patches = jnp.concatenate([x[:, i:i + out_h, j:j + out_w, :]
                             for i in range(kh) for j in range(kw)], axis=-1)
  y = patches.reshape(-1, kh * kw * c) @ kernel.reshape(kh * kw * c, -1)
  return y.reshape(b, out_h, out_w, kernel.shape[-1])


def _tap_matmul_sum(x_BHWC: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """A stride-1 convolution with explicit ((low_h, high_h), (low_w, high_w)) padding as one
  matmul of each pixel by all kh * kw taps (out features kh * kw * out), then a sum of the kh * kw
  shifted planes. Cheap when kh * kw * out is small: the logits layer of a decoder (16 -> 1)."""
  b, h, w, c = x_BHWC.shape
  kh, kw, _, out = kernel.shape
  taps = x_BHWC.reshape(-1, c) @ kernel.transpose(2, 0, 1, 3).reshape(c, kh * kw * out)
  taps = jnp.pad(taps.reshape(b, h, w, kh, kw, out), ((0, 0), *padding, (0, 0), (0, 0), (0, 0)))
  out_h, out_w = taps.shape[1] - kh + 1, taps.shape[2] - kw + 1
  # Output (p, q) sums padded input (p + i, q + j) times tap (i, j).
  return sum(taps[:, i:i + out_h, j:j + out_w, i, j] for i in range(kh) for j in range(kw))


def conv_stride1_fast(x_BHWC: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """The fastest form on XLA:CPU of a stride-1 convolution (NHWC/HWIO, explicit padding pairs).

  Few output taps (kh * kw * out <= in, e.g. 16 -> 1 channels at 3x3): `_tap_matmul_sum`, ~2x
  faster forward and backward than XLA's convolution (measured on a 2-core Xeon, 16 -> 1 at 28x28,
  batch 8: 130 + 240 us instead of 285 + 430). Otherwise XLA's own convolution (conv_stride1).
  """
  kh, kw, c, out = kernel.shape
  if kh * kw * out <= c:
    return _tap_matmul_sum(x_BHWC, kernel, padding)
  if kh * kw * c <= out:
    return _patch_matmul(x_BHWC, kernel, padding)
  return conv_stride1(x_BHWC, kernel, padding)


def conv_transpose_stride2(x_BHWC: jax.Array, kernel: jax.Array) -> jax.Array:
  """`lax.conv_transpose(x, kernel, (2, 2), 'SAME')` (NHWC/HWIO, as flax.linen.ConvTranspose)."""
  b, h, w, _ = x_BHWC.shape
  out_channels = kernel.shape[-1]
  table_h, low_h, high_h = _subpixel_taps(kernel.shape[0])
  table_w, low_w, high_w = _subpixel_taps(kernel.shape[1])
  k = _rearrange_kernel(kernel, table_h, table_w, 'out')  # [Jh, Jw, I, (rh, rw, O)]
  padding = ((low_h, high_h), (low_w, high_w))
  if out_channels >= PATCH_MATMUL_MIN_FEATURES:
    y = _patch_matmul(x_BHWC, k, padding)  # [B, H, W, (rh, rw, O)]
  else:
    y = conv_stride1_fast(x_BHWC, k, padding)
  y = y.reshape(b, h, w, 2, 2, out_channels).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * h, 2 * w, out_channels)


def conv_stride2(x_BHWC: jax.Array, kernel: jax.Array) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (2, 2), 'SAME')` (NHWC/HWIO, as flax.linen.Conv)."""
  b, h, w, c = x_BHWC.shape
  pad_h, _ = _same_pads_conv(h, kernel.shape[0], 2)
  pad_w, _ = _same_pads_conv(w, kernel.shape[1], 2)
  table_h, low_h, high_h = _space_to_depth_taps(kernel.shape[0], pad_h)
  table_w, low_w, high_w = _space_to_depth_taps(kernel.shape[1], pad_w)
  x = jnp.pad(x_BHWC, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
  hh, ww = x.shape[1] // 2, x.shape[2] // 2
  x = x.reshape(b, hh, 2, ww, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hh, ww, 4 * c)
  k = _rearrange_kernel(kernel, table_h, table_w, 'in')  # [Jh, Jw, (ph, pw, I), O]
  # The output has ceil(size / 2) pixels per axis: trim any padding the taps did not need.
  y = conv_stride1(x, k, ((low_h, high_h), (low_w, high_w)))
  return y[:, :-(-h // 2), :-(-w // 2)]


def conv_stride2_patches(x_BHWC: jax.Array, kernel: jax.Array) -> jax.Array:
  """The same map as conv_stride2, as one matmul of the input's patches (im2col) by the kernel.

  The kh * kw strided slices of the SAME-padded input are stacked along channels, [B * Ho * Wo,
  kh * kw * in] @ [kh * kw * in, out]. Autodiff gives the kernel gradient as one matmul and the
  input gradient as a matmul plus pads and adds; no convolution with a dilated input anywhere.
  On XLA:CPU this beats both other forms for the stride-2 layers measured (a 2-core Xeon, forward +
  both gradients): VAE 32->64, 3x3, 28->14, batch 16: 2.5 ms (space-to-depth 7.1, lax 4.4);
  DCGAN 128->256, 5x5, 7->4, batch 64: 22.8 ms (41.7, lax 292); 64->128, 5x5, 14->7: 33 ms (31.5).
  """
  b, h, w, c = x_BHWC.shape
  kh, kw = kernel.shape[:2]
  out_h, out_w = -(-h // 2), -(-w // 2)
  x = jnp.pad(x_BHWC, ((0, 0), _same_pads_conv(h, kh, 2), _same_pads_conv(w, kw, 2), (0, 0)))
  patches = jnp.concatenate([x[:, i:i + 2 * out_h - 1:2, j:j + 2 * out_w - 1:2, :]
                             for i in range(kh) for j in range(kw)], axis=-1)
  y = patches.reshape(-1, kh * kw * c) @ kernel.reshape(kh * kw * c, -1)
  return y.reshape(b, out_h, out_w, kernel.shape[-1])


# --------------------------------------------------------------------------------------------------
# Many replicas on one device.
#
# A many-seed run vmaps a model's step over a replica axis (gan_aec.run.sharding), so each layer
# sees a batch of kernels, one per replica. jax.vmap turns a convolution of a batch of kernels into
# a feature-grouped convolution (its kernel gradient a batch-grouped one), which XLA:CPU runs 10-30x
# slower than the same convolutions one by one; and it turns our patch-matmul forms into one
# batched matmul over patch tensors R times the size, which outgrow the cache (the VAE's im2col of
# 4 replicas is ~29 MB). `per_replica` gives a convolution a batching rule that runs the one-model
# convolution once per replica (unrolled: XLA may run them side by side), forward and backward, so
# R replicas cost R one-model convolutions. A vmap that batches only the images (one kernel) folds
# them into the image batch instead.
# --------------------------------------------------------------------------------------------------

def _fold(a: jax.Array) -> jax.Array:
  return a.reshape(-1, *a.shape[2:])


def _unfold(a: jax.Array, axis_size: int) -> jax.Array:
  return a.reshape(axis_size, -1, *a.shape[1:])


def _map_replicas(fn: Callable, axis_size: int, in_batched, *args):
  """fn on each replica's slice of the batched args (the unbatched ones shared); stacked."""
  outs = [fn(*(a[r] if batched else a for a, batched in zip(args, in_batched)))
          for r in range(axis_size)]
  return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


@functools.lru_cache(maxsize=None)
def per_replica(convolve: Callable[..., jax.Array], *static: Any
                ) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """`(x_BHWC, kernel) -> convolve(x, kernel, *static)` (each image independent, differentiable;
  `static` hashable) with a batching rule that runs it once per replica when its kernel is batched
  (see above), and the same values and gradients as `convolve` itself."""
  def one_model(x, kernel):
    return convolve(x, kernel, *static)
  forward = jax.custom_batching.custom_vmap(one_model)

  @forward.def_vmap
  def _forward_rule(axis_size, in_batched, x, kernel):
    if not in_batched[1]:
      return _unfold(forward(_fold(x), kernel), axis_size), True
    return _map_replicas(forward, axis_size, in_batched, x, kernel), True

  def vjp(x, kernel, dy):
    return jax.vjp(one_model, x, kernel)[1](dy)
  backward = jax.custom_batching.custom_vmap(vjp)

  @backward.def_vmap
  def _backward_rule(axis_size, in_batched, x, kernel, dy):
    if not in_batched[1]:  # One kernel: fold the images; its gradient sums over all of them.
      x = x if in_batched[0] else jnp.broadcast_to(x, (axis_size, *x.shape))
      dy = dy if in_batched[2] else jnp.broadcast_to(dy, (axis_size, *dy.shape))
      dx, dkernel = backward(_fold(x), kernel, _fold(dy))
      return (_unfold(dx, axis_size), dkernel), (True, False)
    return _map_replicas(backward, axis_size, in_batched, x, kernel, dy), (True, True)

  @jax.custom_vjp
  def convolve_per_replica(x, kernel):
    return forward(x, kernel)

  convolve_per_replica.defvjp(lambda x, kernel: (forward(x, kernel), (x, kernel)),
                              lambda residuals, dy: backward(*residuals, dy))
  return convolve_per_replica


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
  'fast' (patch matmul for stride 2, chunked kernel gradients for stride 1), 'xla' (lax.conv_general_dilated,
  the textbook form), or 'auto' (the default: fast on CPU, xla elsewhere).
  """

  def _convolve(self, x, kernel, strides, fast):
    if fast:
      if strides == (2, 2):
        return per_replica(conv_stride2_patches)(x, kernel)
      pads = tuple(_same_pads_conv(size, k, 1) for size, k in zip(x.shape[1:3], kernel.shape[:2]))
      return per_replica(conv_stride1_fast, pads)(x, kernel)
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
      return per_replica(conv_transpose_stride2)(x, kernel)
    return jax.lax.conv_transpose(x, kernel, strides, 'SAME',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def keep_mask(rng: jax.Array, keep_prob: float, shape: tuple[int, ...]) -> tuple[jax.Array, float]:
  """A Bernoulli(keep_prob) mask of `shape` from 16 random bits per element; and its exact
  keep probability, round(keep_prob * 2**16) / 2**16 (0.9 -> 0.899994).

  Each 32-bit random word gives two elements: half the random-bit generation of
  `jax.random.bernoulli` (one word per element), whose threefry hash is the costly part on CPU
  (~35 ms of the DCGAN's ~430 ms step went to dropout masks).
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
