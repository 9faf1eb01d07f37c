"""The fast layers compute exactly what the textbook layers compute, forward and backward."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_aec import layers


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
