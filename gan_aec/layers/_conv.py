"""The convolution forms behind gan_aec.layers.Conv and ConvTranspose on CPU (private).

XLA:CPU runs input-dilated convolutions on a slow generic path: `lax.conv_transpose` is one, and
so is the input gradient of a strided `lax.conv`. The forms here compute exactly the textbook
layer's linear map without input dilation, with the textbook parameters (kernel [kh, kw, in, out],
bias [out]), so weights map 1:1:
  - transposed convolution, stride 2: a stride-1 convolution to 4x the channels whose kernel is a
    static rearrangement of the textbook kernel (zero where a tap does not exist), then
    depth-to-space; each of the 2x2 output phases uses its own subset of the taps ("sub-pixel
    convolution") - conv_transpose_stride2;
  - convolution, stride 2: one matmul of the input's strided patches (im2col) by the kernel -
    conv_stride2_patches;
  - convolution, stride 1: XLA's own, with its kernel gradient in cache-sized chunks of the batch,
    or one of two matmul forms where the channel counts favour them - conv_stride1_fast.
Forward and both gradients are then stride-1 convolutions, matmuls and reshapes: XLA:CPU's fast
paths. What each form costs against the textbook one is measured in docs/performance.md.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

_NO_TAP = -1


def same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
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


def _rearrange_kernel(kernel: jax.Array, table_h: np.ndarray, table_w: np.ndarray) -> jax.Array:
  """kernel [kh, kw, I, O] -> the stride-1 sub-pixel kernel [Jh, Jw, I, (rh, rw, O)] the tables
  describe (the phases are output channels), zero where they say _NO_TAP."""
  starts_h = tuple(_phase_starts(table_h, kernel.shape[0]))
  starts_w = tuple(_phase_starts(table_w, kernel.shape[1]))
  return _rearrange_by_phases(kernel, (starts_h, len(table_h)), (starts_w, len(table_w)))


# Each phase is a stride-2 slice of the zero-padded kernel. Autodiff would differentiate that into
# four full-size interior pads and their sum (and a gather into a scatter-add), a large part of
# the DCGAN generator's step on CPU. Every kernel tap lands in exactly one phase, so the gradient is
# the inverse rearrangement: interleave the two phases of each axis and drop the padding.
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _rearrange_by_phases(kernel, phases_h, phases_w):
  (starts_h, jh), (starts_w, jw) = phases_h, phases_w
  _, _, i, o = kernel.shape
  padded = jnp.pad(kernel, ((1, 1), (1, 1), (0, 0), (0, 0)))
  phases = [padded[sh:sh + 2 * jh - 1:2, sw:sw + 2 * jw - 1:2]
            for sh in starts_h for sw in starts_w]
  return jnp.stack(phases, axis=3).reshape(jh, jw, i, 4 * o)


def _rearrange_by_phases_fwd(kernel, phases_h, phases_w):
  return (_rearrange_by_phases(kernel, phases_h, phases_w),
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


def _rearrange_by_phases_bwd(phases_h, phases_w, kernel_shape, g):
  (starts_h, jh), (starts_w, jw) = phases_h, phases_w
  kh, kw, i, o = kernel_shape.shape
  g = g.reshape(jh, jw, i, 2, 2, o).transpose(3, 0, 4, 1, 2, 5)  # [rh, Jh, rw, Jw, I, O]
  g = _interleave_axis(g, 0, starts_h, kh)  # [kh, rw, Jw, I, O]
  g = _interleave_axis(g, 1, starts_w, kw)  # [kh, kw, I, O]
  return (g.astype(kernel_shape.dtype),)


_rearrange_by_phases.defvjp(_rearrange_by_phases_fwd, _rearrange_by_phases_bwd)


def _conv_nhwc(x, kernel, padding):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


# XLA:CPU computes a convolution's kernel gradient (a contraction over batch and pixels) far below
# the machine's speed once the activations outgrow the L2 cache: for 200 images of 28x28, 32 -> 32
# channels it takes ~5x as long as the forward pass. Summing the kernel gradients of chunks of
# images whose activations fit in ~2 MB is several times faster (docs/performance.md); the forward
# pass and the input gradient do not gain from chunking and stay whole. (Models without BatchNorm
# do better still by micro-batching the whole step: gan_aec.microbatching.)
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
# features on, XLA's convolution below it (docs/performance.md, "What decides the speed on CPU").
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

  Few output taps (kh * kw * out <= in, e.g. 16 -> 1 channels at 3x3): `_tap_matmul_sum`; few
  input taps (kh * kw * in <= out): `_patch_matmul`; otherwise XLA's own convolution
  (conv_stride1).
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
  k = _rearrange_kernel(kernel, table_h, table_w)  # [Jh, Jw, I, (rh, rw, O)]
  padding = ((low_h, high_h), (low_w, high_w))
  if out_channels >= PATCH_MATMUL_MIN_FEATURES:
    y = _patch_matmul(x_BHWC, k, padding)  # [B, H, W, (rh, rw, O)]
  else:
    y = conv_stride1_fast(x_BHWC, k, padding)
  y = y.reshape(b, h, w, 2, 2, out_channels).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * h, 2 * w, out_channels)


def conv_stride2_patches(x_BHWC: jax.Array, kernel: jax.Array) -> jax.Array:
  """`lax.conv_general_dilated(x, kernel, (2, 2), 'SAME')` (NHWC/HWIO, as flax.linen.Conv), as
  one matmul of the input's patches (im2col) by the kernel.

  The kh * kw strided slices of the SAME-padded input are stacked along channels, [B * Ho * Wo,
  kh * kw * in] @ [kh * kw * in, out]. Autodiff gives the kernel gradient as one matmul and the
  input gradient as a matmul plus pads and adds; no convolution with a dilated input anywhere.
  On XLA:CPU this beats lax's form and a space-to-depth stride-1 convolution on the stride-2
  layers of our models (docs/performance.md).
  """
  b, h, w, c = x_BHWC.shape
  kh, kw = kernel.shape[:2]
  out_h, out_w = -(-h // 2), -(-w // 2)
  x = jnp.pad(x_BHWC, ((0, 0), same_pads(h, kh, 2), same_pads(w, kw, 2), (0, 0)))
  patches = jnp.concatenate([x[:, i:i + 2 * out_h - 1:2, j:j + 2 * out_w - 1:2, :]
                             for i in range(kh) for j in range(kw)], axis=-1)
  y = patches.reshape(-1, kh * kw * c) @ kernel.reshape(kh * kw * c, -1)
  return y.reshape(b, out_h, out_w, kernel.shape[-1])


# --------------------------------------------------------------------------------------------------
# Many replicas on one device.
#
# Under jax.vmap over a batch of kernels (a researcher's vmap over seeds; the loop's many seeds on
# one CPU device train one call after another instead: gan_aec.run.sharding), jax.vmap turns a
# convolution into a feature-grouped convolution (its kernel gradient a batch-grouped one), which
# XLA:CPU runs 10-30x slower than the same convolutions one by one; and it turns the patch-matmul
# forms into one batched matmul over patch tensors R times the size, which outgrow the cache.
# `per_replica` gives a convolution a batching rule that runs the one-model convolution once per
# replica (unrolled), forward and backward, so R replicas cost R one-model convolutions. A vmap
# that batches only the images (one kernel) folds them into the image batch instead.
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

