"""Op-by-op profiles (gan_aec.run.profiling): each compiled instruction's kind."""

import jax
import jax.numpy as jnp

from gan_aec.layers import _conv
from gan_aec.run import profiling


def kinds_of(fn, *args) -> set[str]:
  return set(profiling.instruction_kinds(jax.jit(fn).lower(*args).compile().as_text()).values())


def test_convolutions_grouped_ones_and_matmuls_are_told_apart():
  x, k = jnp.ones((4, 2, 8, 8, 3)), jnp.ones((4, 3, 3, 3, 5))
  conv = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=(
      'NHWC', 'HWIO', 'NHWC'))
  assert 'convolution' in kinds_of(conv, x[0], k[0])
  assert 'convolution, grouped' in kinds_of(jax.vmap(conv), x, k)
  assert 'convolution, grouped' not in kinds_of(jax.vmap(
      lambda x, k: _conv.per_replica(_conv.conv_stride1_fast, ((1, 1), (1, 1)))(x, k)), x, k)
  assert 'matmul (dot)' in kinds_of(lambda a: a @ a, jnp.ones((64, 64)))
  assert 'elementwise' in kinds_of(lambda a: jnp.tanh(a) * 2, jnp.ones((64, 64)))
