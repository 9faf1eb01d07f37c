"""The fast layers compute exactly what the textbook layers compute, forward and backward."""

import functools
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_aec import layers
from gan_aec.layers import _conv


def _value_and_input_grad(fn, x, cotangent_seed=1):
  out = fn(x)
  cotangent = jax.random.normal(jax.random.key(cotangent_seed), out.shape)
  grad = jax.grad(lambda x: jnp.sum(fn(x) * cotangent))(x)
  return out, grad


@pytest.mark.parametrize('height,width', [(28, 28), (14, 14), (7, 7), (5, 6)])
def test_max_pool_2x2_matches_flax_max_pool(height, width):
  x = jax.random.normal(jax.random.key(0), (3, height, width, 4))
  ours = _value_and_input_grad(layers.max_pool_2x2, x)
  flax_pool = _value_and_input_grad(lambda x: nn.max_pool(x, (2, 2), (2, 2), 'SAME'), x)
  chex.assert_shape(ours[0], (3, (height + 1) // 2, (width + 1) // 2, 4))
  chex.assert_trees_all_close(ours, flax_pool, rtol=0, atol=0)


def test_nearest_resize_indices_follow_tf1_rule():
  np.testing.assert_array_equal(layers.nearest_resize_indices(4, 7), [0, 0, 1, 1, 2, 2, 3])
  np.testing.assert_array_equal(layers.nearest_resize_indices(7, 14), np.repeat(np.arange(7), 2))


@pytest.mark.parametrize('in_size,out_size', [((4, 4), (7, 7)), ((7, 7), (14, 14)),
                                              ((14, 14), (28, 28)), ((3, 5), (7, 10))])
def test_nearest_resize_matches_tf1_resize_nearest_neighbor(in_size, out_size):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, *in_size, 3)))
  expected = tf.compat.v1.image.resize_nearest_neighbor(x, out_size).numpy()
  chex.assert_trees_all_close(layers.nearest_resize(jnp.asarray(x), out_size), expected,
                              rtol=0, atol=0)


@pytest.mark.parametrize('in_size,out_size', [((4, 4), (7, 7)), ((7, 7), (14, 14))])
def test_nearest_resize_gradient_matches_gather(in_size, out_size):
  rows = layers.nearest_resize_indices(in_size[0], out_size[0])
  cols = layers.nearest_resize_indices(in_size[1], out_size[1])
  x = jax.random.normal(jax.random.key(0), (2, *in_size, 3))
  ours = _value_and_input_grad(lambda x: layers.nearest_resize(x, out_size), x)
  gather = _value_and_input_grad(lambda x: x[:, rows][:, :, cols], x)
  chex.assert_trees_all_close(ours, gather, rtol=1e-6, atol=1e-6)


# Every configuration the models use: kernels 3 (VAE) and 5 (DCGAN), stride 2, SAME, even and odd
# sizes (the DCGAN's discriminator sees 28 -> 14 -> 7 -> 4; its generator 4 -> 8, 7 -> 14 -> 28).
STRIDED_CASES = [(k, size) for k in (3, 5) for size in ((28, 28), (14, 14), (7, 7), (4, 4), (5, 6))]


def _compare_with_flax(ours_module, flax_module, x):
  """Initialises both modules from one rng: same parameter tree; then values and all gradients."""
  params = flax_module.init(jax.random.key(1), x)
  ours_params = ours_module.init(jax.random.key(1), x)
  chex.assert_trees_all_equal_shapes_and_dtypes(ours_params, params)
  chex.assert_trees_all_equal(ours_params, params)  # Same names, shapes and initialisers.

  @functools.partial(jax.jit, static_argnums=2)
  def value_and_grads(params, x, module_index):
    module = (ours_module, flax_module)[module_index]
    out = module.apply(params, x)
    cotangent = jax.random.normal(jax.random.key(2), out.shape)
    grads = jax.grad(lambda p, x: jnp.sum(module.apply(p, x) * cotangent),
                     argnums=(0, 1))(params, x)
    return out, grads

  ours = value_and_grads(params, x, 0)
  reference = value_and_grads(params, x, 1)
  # Float32 rounding of sums in a different order: relative to each array's largest entry.
  for leaf_ours, leaf_ref in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
    scale = float(jnp.abs(leaf_ref).max())
    chex.assert_trees_all_close(leaf_ours, leaf_ref, rtol=0, atol=1e-5 * scale)
  return ours[0]


@pytest.mark.parametrize('kernel,size', STRIDED_CASES)
@pytest.mark.slow
def test_fast_strided_conv_matches_flax_conv(kernel, size):
  x = jax.random.normal(jax.random.key(0), (2, *size, 6))
  kwargs = dict(features=8, kernel_size=(kernel, kernel), strides=(2, 2), padding='SAME')
  out = _compare_with_flax(
      layers.Conv(**{k: v for k, v in kwargs.items() if k != 'padding'}, implementation='fast'),
      nn.Conv(**kwargs), x)
  chex.assert_shape(out, (2, (size[0] + 1) // 2, (size[1] + 1) // 2, 8))


@pytest.mark.parametrize('kernel,size,features',
                         [(k, size, 8) for k, size in STRIDED_CASES]  # Convolution form.
                         + [(3, (14, 14), 32), (5, (4, 4), 16), (5, (7, 7), 16)])  # Patch matmul.
@pytest.mark.slow
def test_fast_conv_transpose_matches_flax_conv_transpose(kernel, size, features):
  x = jax.random.normal(jax.random.key(0), (2, *size, 6))
  kwargs = dict(features=features, kernel_size=(kernel, kernel), strides=(2, 2), padding='SAME')
  out = _compare_with_flax(
      layers.ConvTranspose(**{k: v for k, v in kwargs.items() if k != 'padding'},
                           implementation='fast'),
      nn.ConvTranspose(**kwargs), x)
  chex.assert_shape(out, (2, 2 * size[0], 2 * size[1], features))


@pytest.mark.parametrize('implementation', ['fast', 'xla'])
def test_stride_one_conv_and_both_implementations_match_flax(implementation):
  x = jax.random.normal(jax.random.key(0), (2, 7, 7, 4))
  _compare_with_flax(layers.Conv(8, (3, 3), implementation=implementation),
                     nn.Conv(8, (3, 3), padding='SAME'), x)
  _compare_with_flax(layers.ConvTranspose(8, (5, 5), implementation=implementation),
                     nn.ConvTranspose(8, (5, 5), strides=(2, 2), padding='SAME'), x)


# Few output taps (kh * kw * out <= in): the tap-matmul form (the decoders' logits layers:
# the autoencoder's 16 -> 1 and 32 -> 1, the VAE's and DCGAN's last transposed convolutions).
@pytest.mark.parametrize('module_class,kernel,size,in_features', [
    (layers.Conv, 3, (28, 28), 16), (layers.Conv, 5, (5, 6), 32),
    (layers.ConvTranspose, 3, (14, 14), 32), (layers.ConvTranspose, 5, (7, 7), 64)])
def test_few_output_taps_layers_match_flax(module_class, kernel, size, in_features):
  x = jax.random.normal(jax.random.key(0), (2, *size, in_features))
  strides = (1, 1) if module_class is layers.Conv else (2, 2)
  flax_class = nn.Conv if module_class is layers.Conv else nn.ConvTranspose
  _compare_with_flax(module_class(1, (kernel, kernel), strides=strides, implementation='fast'),
                     flax_class(1, (kernel, kernel), strides=strides, padding='SAME'), x)
  init = jax.jit(module_class(1, (kernel, kernel), strides=strides).init)
  assert 'convolution' not in init.lower(jax.random.key(0), x).as_text()


def _convolution_windows(module, x):
  """(stride, lhs_dilate, rhs_dilate) of every convolution XLA runs for the module's forward +
  backward (the compiled program: what is left after XLA's optimisations)."""
  params = module.init(jax.random.key(0), x)
  grad = jax.jit(jax.value_and_grad(lambda p, x: module.apply(p, x).sum(), argnums=(0, 1)))
  hlo = grad.lower(params, x).compile().as_text()
  windows = re.findall(r'convolution\([^\n]*window=\{([^}]*)\}', hlo)
  return [tuple(tuple(int(v) for v in re.search(name + r'=(\d+)x(\d+)', w).groups())
                if name in w else (1, 1) for name in ('stride', 'lhs_dilate', 'rhs_dilate'))
          for w in windows]


@pytest.mark.parametrize('module_class', [layers.Conv, layers.ConvTranspose])
def test_fast_layers_compile_to_plain_stride_one_convolutions(module_class):
  """The point of the rewrite: no strided or dilated convolution, forward or backward."""
  x = jnp.ones((2, 7, 7, 4))
  fast = _convolution_windows(module_class(8, (5, 5), strides=(2, 2), implementation='fast'), x)
  # ConvTranspose: three stride-1 convolutions; Conv: none at all (a patch matmul).
  assert len(fast) == (3 if module_class is layers.ConvTranspose else 0), fast
  assert all(window == ((1, 1), (1, 1), (1, 1)) for window in fast), fast
  # The textbook form does have them: this test can tell the two apart.
  xla = _convolution_windows(module_class(8, (5, 5), strides=(2, 2), implementation='xla'), x)
  assert len(xla) == 3  # Forward, input gradient, kernel gradient.
  assert any(window != ((1, 1), (1, 1), (1, 1)) for window in xla), xla


@pytest.mark.parametrize('kernel,size', [(3, (7, 7)), (5, (14, 14)), (5, (5, 6))])
def test_patch_matmul_strided_conv_matches_lax(kernel, size):
  """Conv's stride-2 form (one matmul of the input's patches): values and both gradients."""
  x = jax.random.normal(jax.random.key(0), (2, *size, 6))
  w = jax.random.normal(jax.random.key(1), (kernel, kernel, 6, 8))
  lax_conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  ref = lax_conv(x, w)
  chex.assert_trees_all_close(_conv.conv_stride2_patches(x, w), ref, atol=1e-4)
  cotangent = jax.random.normal(jax.random.key(2), ref.shape)
  grads = lambda conv: jax.grad(lambda x, w: jnp.sum(conv(x, w) * cotangent), (0, 1))(x, w)
  chex.assert_trees_all_close(grads(_conv.conv_stride2_patches), grads(lax_conv), atol=1e-3)


def test_dropout_keeps_the_rate_is_unbiased_and_is_off_when_deterministic():
  x = jnp.ones((64, 7, 7, 33))  # Odd last axis: the two 16-bit halves are trimmed.
  layer = layers.Dropout(0.1)
  y = layer.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(0)})
  kept = y != 0
  chex.assert_trees_all_close(float(kept.mean()), 0.9, atol=0.005)  # 103,488 draws: std 0.001.
  chex.assert_trees_all_close(y[kept], jnp.full(int(kept.sum()), 65536 / 58982))
  # Different keys, different masks; the mask's halves are not copies of each other.
  other = layer.apply({}, x, deterministic=False, rngs={'dropout': jax.random.key(1)})
  assert float(((other != 0) != kept).mean()) > 0.1
  assert float((kept[..., :16] != kept[..., 16:32]).mean()) > 0.1
  chex.assert_trees_all_equal(layer.apply({}, x, deterministic=True), x)
  chex.assert_trees_all_equal(layers.Dropout(1.0).apply({}, x, deterministic=False), 0 * x)


# --------------------------------------------------------------------------------------------------
# Many replicas: the layers under jax.vmap over a batch of kernels (layers._conv.per_replica).
# --------------------------------------------------------------------------------------------------

REPLICA_LAYERS = [(layers.Conv, 1, 3), (layers.Conv, 2, 3), (layers.Conv, 1, 5),
                  (layers.ConvTranspose, 2, 5), (layers.ConvTranspose, 2, 3)]


def _replica_losses(module_class, strides, kernel, features=6):
  fast = module_class(features, (kernel, kernel), strides=strides, implementation='fast')
  xla = module_class(features, (kernel, kernel), strides=strides, implementation='xla')

  def loss(module, params, x):  # Each replica: its own kernel on its own images.
    return jnp.sum(jnp.sin(jax.vmap(module.apply)(params, x)))
  return fast, functools.partial(loss, fast), functools.partial(loss, xla)


@pytest.mark.parametrize('module_class,strides,kernel', REPLICA_LAYERS,
                         ids=[f'{m.__name__}-s{s}-k{k}' for m, s, k in REPLICA_LAYERS])
@pytest.mark.slow
def test_vmapped_fast_layers_equal_the_vmapped_textbook_layer(module_class, strides, kernel):
  replicas, x = 3, jax.random.normal(jax.random.key(0), (3, 2, 7, 7, 5))
  fast, fast_loss, xla_loss = _replica_losses(module_class, strides, kernel)
  params = jax.vmap(lambda k: fast.init(k, x[0]))(jax.random.split(jax.random.key(1), replicas))
  (value, grads), (want_value, want_grads) = [
      jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(params, x) for f in (fast_loss, xla_loss)]
  np.testing.assert_allclose(value, want_value, rtol=1e-5)
  chex.assert_trees_all_close(grads, want_grads, rtol=1e-4, atol=1e-4)
  # One kernel shared by a vmapped batch of images (e.g. per-example code) folds into the batch.
  one = jax.tree.map(lambda p: p[0], params)
  shared = [jax.grad(lambda p, m=m: jnp.sum(jnp.sin(jax.vmap(m.apply, (None, 0))(p, x))))(one)
            for m in (fast, module_class(6, (kernel, kernel), strides=strides,
                                         implementation='xla'))]
  chex.assert_trees_all_close(shared[0], shared[1], rtol=1e-4, atol=1e-4)


def test_vmapped_fast_layers_run_no_grouped_convolution():
  """jax.vmap of a convolution over kernels makes a grouped one (XLA:CPU's slow path); the fast
  layers' batching rule runs one convolution per replica instead."""
  x = jax.random.normal(jax.random.key(0), (4, 2, 7, 7, 8))
  for implementation, grouped in (('fast', False), ('xla', True)):
    module = layers.Conv(8, (3, 3), implementation=implementation)
    params = jax.vmap(lambda k: module.init(k, x[0]))(jax.random.split(jax.random.key(1), 4))
    grad = jax.jit(jax.grad(lambda p: jnp.sum(jax.vmap(module.apply)(p, x) ** 2)))
    hlo = grad.lower(params).compile().as_text()
    assert ('feature_group_count' in hlo or 'batch_group_count' in hlo) == grouped, implementation
