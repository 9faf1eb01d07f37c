"""config.compute_dtype='bfloat16': activations in bfloat16, parameters and losses in float32, the
same model and nearly the same numbers; a run cannot switch it on resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_aec import errors
from gan_aec.data import batching, mnist
from gan_aec.run import config as config_lib, tasks, workdir
from gan_aec.dcgan import Discriminator, Generator

# Whole train steps for the autoencoders (the denoising one shares the autoencoder's model) and the
# VAE; the DCGAN's networks forward (its step costs ~40 s of compiling per dtype).
MODELS = ('autoencoder', 'vae')


def first_step(name: str, compute_dtype: str):
  config = config_lib.load_config(name, 'smoke')
  config.compute_dtype = compute_dtype
  task = tasks.build_task(config)
  batches = batching.TrainBatches(mnist.load_bundled().train, 8, seed=0,
                                        value_range=task.image_range)
  batch = batches.get(0)
  state = task.create_state(jax.random.key(0), batch)
  step = jax.jit(task.train_step)
  hlo = step.lower(state, batch, jax.random.key(1)).as_text()
  new_state, metrics = step(state, batch, jax.random.key(1))
  return state, new_state, jax.device_get(metrics), hlo


def floats(state) -> list:
  return [leaf for leaf in jax.tree.leaves(state)
          if hasattr(leaf, 'dtype') and jnp.issubdtype(leaf.dtype, jnp.floating)]


@pytest.mark.parametrize('name', MODELS)
@pytest.mark.slow
def test_bfloat16_computes_in_bfloat16_and_keeps_float32_parameters_and_losses(name):
  state32, _, metrics32, hlo32 = first_step(name, 'float32')
  state16, new16, metrics16, hlo16 = first_step(name, 'bfloat16')
  assert 'bf16' in hlo16 and 'bf16' not in hlo32
  # The same parameters (and optimizer, BatchNorm, EMA state) at initialisation; float32 before
  # and after the step.
  jax.tree.map(np.testing.assert_array_equal, floats(state32), floats(state16))
  assert all(leaf.dtype == jnp.float32 for leaf in floats(new16))
  assert metrics16.keys() == metrics32.keys()
  for key, value in metrics16.items():
    assert value.dtype == np.float32, key
    np.testing.assert_allclose(value, metrics32[key], rtol=0.03, atol=0.02, err_msg=key)


def test_bfloat16_dcgan_networks_match_float32_with_float32_parameters_and_outputs():
  z = jax.random.uniform(jax.random.key(0), (4, 100), minval=-1.0, maxval=1.0)
  rngs = {'params': jax.random.key(1), 'dropout': jax.random.key(2)}
  outputs = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    generator, discriminator = Generator(dtype=dtype), Discriminator(dtype=dtype)

    @jax.jit
    def forward(rngs, z, generator=generator, discriminator=discriminator):
      g_vars = generator.init(rngs, z, train=False)
      images, _ = generator.apply(g_vars, z, train=True, rngs=rngs, mutable=['batch_stats'])
      d_vars = discriminator.init(rngs, images, train=False)
      logits, stats = discriminator.apply(d_vars, images, train=True, rngs=rngs,
                                          mutable=['batch_stats'])
      return g_vars, d_vars, images, logits, stats

    g_vars, d_vars, images, logits, stats = forward(rngs, z)
    assert images.dtype == logits.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in floats((g_vars, d_vars, stats)))
    outputs[dtype] = images, logits
  np.testing.assert_allclose(outputs[jnp.bfloat16][0], outputs[jnp.float32][0], atol=0.05)
  np.testing.assert_allclose(outputs[jnp.bfloat16][1], outputs[jnp.float32][1], rtol=0.05,
                             atol=0.05)


def test_unknown_compute_dtype_is_a_config_error():
  config = config_lib.load_config('vae', 'smoke')
  config.compute_dtype = 'float16'
  with pytest.raises(errors.ConfigError, match="compute_dtype must be one of"):
    tasks.build_task(config)


def test_a_run_cannot_switch_compute_dtype_on_resume():
  config = config_lib.load_config('dcgan', 'smoke')
  saved = workdir._as_plain(config)  # pylint: disable=protected-access
  config.compute_dtype = 'bfloat16'
  assert workdir.differences(saved, config) == {'compute_dtype': ('float32', 'bfloat16')}
  # A workdir written before the field existed trained in float32.
  del saved['compute_dtype']
  assert workdir.differences(saved, config) == {'compute_dtype': ('float32', 'bfloat16')}
  config.compute_dtype = 'float32'
  assert not workdir.differences(saved, config)
