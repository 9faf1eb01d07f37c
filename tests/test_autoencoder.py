"""The autoencoder family: model shapes, losses against hand computations, steps that learn."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_aec import autoencoder, train_state
from gan_aec.data import mnist
from gan_aec.data.batching import to_float

SEED_WIDTHS = {
    'autoencoder': ((16, 8, 8), (8, 8, 16)),
    'denoising_autoencoder': ((32, 32, 16), (16, 32, 32)),
}


@pytest.fixture(scope='module')
def digits():
  """32 real digits from the bundled set, float32 [32, 28, 28, 1] in [0, 1]."""
  return to_float(mnist.load_bundled().train.images[:32])


@pytest.mark.parametrize('name', sorted(SEED_WIDTHS))
@pytest.mark.slow
def test_model_shapes_and_dtypes(name, digits):
  encoder, decoder = SEED_WIDTHS[name]
  model = autoencoder.ConvAutoencoder(encoder_features=encoder, decoder_features=decoder)
  params = model.init(jax.random.key(0), digits[:2])['params']
  logits = model.apply({'params': params}, digits[:4])
  chex.assert_shape(logits, (4, 28, 28, 1))
  chex.assert_type(logits, jnp.float32)
  code, _ = model.apply({'params': params}, digits[:4], method=model.encode)
  chex.assert_shape(code, (4, 4, 4, encoder[-1]))
  # The seed's layer widths, in order: three encoder convs, three decoder convs, 1-channel logits.
  widths = [params[f'encoder_conv{i}']['kernel'].shape for i in range(3)]
  widths += [params[f'decoder_conv{i}']['kernel'].shape for i in range(3)]
  assert [w[-1] for w in widths] == [*encoder, *decoder]
  assert params['logits_conv']['kernel'].shape == (3, 3, decoder[-1], 1)


def test_reconstruction_loss_matches_hand_computation():
  logits = jnp.array([0.0, 2.0, -1.0, 3.0]).reshape(1, 2, 2, 1)
  targets = jnp.array([0.5, 1.0, 0.0, 0.25]).reshape(1, 2, 2, 1)
  sigmoid = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0, 3.0])))
  t = np.array([0.5, 1.0, 0.0, 0.25])
  expected = np.mean(-(t * np.log(sigmoid) + (1 - t) * np.log(1 - sigmoid)))
  loss = autoencoder.reconstruction_loss(logits=logits, targets=targets)
  chex.assert_shape(loss, (1,))
  np.testing.assert_allclose(loss, [expected], rtol=1e-6)


def test_psnr_matches_hand_computation():
  targets = jnp.zeros((2, 4, 4, 1))
  images = targets.at[0].set(0.1).at[1].set(0.01)  # MSE 1e-2 and 1e-4: 20 dB and 40 dB.
  np.testing.assert_allclose(autoencoder.psnr(images=images, targets=targets), [20.0, 40.0],
                             rtol=1e-5)


def test_add_noise_stays_in_unit_range_and_depends_on_rng(digits):
  a = autoencoder.add_noise(digits, jax.random.key(0), 0.5)
  b = autoencoder.add_noise(digits, jax.random.key(1), 0.5)
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert not np.allclose(a, b)
  # Noise of std 0.5, clipped: the noisy digits are far from the clean ones (about 9.4 dB).
  assert 8.0 < float(autoencoder.psnr(images=a, targets=digits).mean()) < 11.0


@pytest.mark.parametrize('name,noise_std', [('autoencoder', 0.0), ('denoising_autoencoder', 0.5)])
@pytest.mark.slow
def test_train_step_lowers_the_loss_on_a_small_batch(name, noise_std, digits):
  encoder, decoder = SEED_WIDTHS[name]
  model = autoencoder.ConvAutoencoder(encoder_features=encoder, decoder_features=decoder)
  state = train_state.create(model=model, params=model.init(jax.random.key(0), digits)['params'],
                             tx=optax.adam(3e-3))
  step = jax.jit(functools.partial(autoencoder.train_step, noise_std=noise_std))
  batch = {'image': digits}
  losses = []
  for i in range(40):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics['loss']))
  assert int(state.step) == 40
  assert losses[-1] < 0.6 * losses[0], losses


def test_eval_step_ignores_padding(digits):
  model = autoencoder.ConvAutoencoder()
  state = train_state.create(model=model, params=model.init(jax.random.key(0), digits)['params'],
                             tx=optax.adam(1e-3))
  rng = jax.random.key(0)
  padded = {'image': digits[:4], 'mask': jnp.array([True, True, False, False])}
  sums = autoencoder.eval_step(state, padded, rng)
  exact = autoencoder.eval_step(state, {'image': digits[:2]}, rng)
  assert float(sums['count']) == 2.0
  chex.assert_trees_all_close(sums, exact, rtol=1e-6)


@pytest.mark.parametrize('microbatch_size', [8, 12])
@pytest.mark.slow
def test_microbatched_step_equals_the_whole_batch_step(microbatch_size, digits):
  model = autoencoder.ConvAutoencoder()
  state = train_state.create(model=model, params=model.init(jax.random.key(0), digits)['params'],
                             tx=optax.sgd(1.0))  # SGD with lr 1: the update is the gradient.
  batch, rng = {'image': digits}, jax.random.key(3)
  whole = jax.jit(functools.partial(autoencoder.train_step, noise_std=0.5, microbatch_size=None))
  parts = jax.jit(functools.partial(autoencoder.train_step, noise_std=0.5,
                                    microbatch_size=microbatch_size))  # 12 leaves a remainder of 8.
  (state_whole, metrics_whole), (state_parts, metrics_parts) = whole(state, batch, rng), parts(
      state, batch, rng)
  chex.assert_trees_all_close(state_parts.params, state_whole.params, rtol=1e-5, atol=1e-7)
  chex.assert_trees_all_close(metrics_parts, metrics_whole, rtol=1e-6)
  # And the update did happen: the parameters moved.
  assert not np.allclose(state_whole.params['logits_conv']['kernel'],
                         state.params['logits_conv']['kernel'])


def test_kernel_init_choices(digits):
  glorot = autoencoder.ConvAutoencoder(kernel_init='glorot_uniform').init(jax.random.key(0), digits)
  lecun = autoencoder.ConvAutoencoder(kernel_init='lecun_normal').init(jax.random.key(0), digits)
  # Same shapes, different draws: Glorot-uniform is bounded by sqrt(6 / (fan_in + fan_out)).
  chex.assert_trees_all_equal_shapes(glorot, lecun)
  kernel = glorot['params']['decoder_conv2']['kernel']
  assert float(jnp.abs(kernel).max()) <= np.sqrt(6 / (9 * 8 + 9 * 16))
  assert not np.allclose(kernel, lecun['params']['decoder_conv2']['kernel'])
  with pytest.raises(ValueError, match='kernel_init'):
    autoencoder.ConvAutoencoder(kernel_init='zeros').init(jax.random.key(0), digits)
