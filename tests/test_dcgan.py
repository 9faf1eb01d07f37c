"""The DCGAN: network shapes and ranges, losses against hand computations, the two-network step."""

import functools
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_aec import dcgan
from gan_aec.data import mnist
from gan_aec.run import config as config_lib, loop, tasks
from gan_aec.data.batching import to_float
from tests import helpers


@pytest.fixture(scope='module')
def task_and_state():
  config = config_lib.load_config('dcgan', 'smoke')
  task = tasks.build_task(config)
  batch = {'image': to_float(mnist.load_bundled().train.images[:8])}
  return config, task, task.create_state(jax.random.key(0), batch), batch


@pytest.mark.slow
def test_generator_and_discriminator_shapes_and_ranges(task_and_state):
  _, _, state, batch = task_and_state
  z = dcgan.sample_latents(jax.random.key(1), 6, 100)
  assert float(z.min()) >= -1.0 and float(z.max()) <= 1.0
  images = dcgan.generate(state, z)
  chex.assert_shape(images, (6, 28, 28, 1))
  chex.assert_type(images, jnp.float32)
  assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0  # tanh output.
  d = state.discriminator
  logits = d.apply_fn({'params': d.params, 'batch_stats': d.batch_stats}, batch['image'] * 2 - 1,
                      train=False)
  chex.assert_shape(logits, (8,))
  # The seed's widths: Dense to 4x4x512, transposed convs to 256, 128 and 1 channel; D 64-128-256.
  g_params = state.generator.params
  assert g_params['Dense_0']['kernel'].shape == (100, 4 * 4 * 512)
  assert [g_params[f'ConvTranspose_{i}']['kernel'].shape[-1] for i in range(3)] == [256, 128, 1]
  assert [d.params[f'Conv_{i}']['kernel'].shape[-1] for i in range(3)] == [64, 128, 256]


@pytest.mark.parametrize('channels', [1, 3])
def test_64_pixel_variant_shapes(channels):
  generator = dcgan.Generator(image_size=64, channels=channels)
  discriminator = dcgan.Discriminator(image_size=64)
  z = jnp.zeros((2, 100))
  g_vars = jax.eval_shape(lambda: generator.init(jax.random.key(0), z, train=False))
  out = jax.eval_shape(lambda v: generator.apply(v, z, train=False), g_vars)
  chex.assert_shape(out, (2, 64, 64, channels))
  d_out = jax.eval_shape(lambda: discriminator.init_with_output(
      jax.random.key(0), jnp.zeros((2, 64, 64, channels)), train=False)[0])
  chex.assert_shape(d_out, (2,))
  with pytest.raises(ValueError, match='image_size must be 28'):
    dcgan.Generator(image_size=32).init(jax.random.key(0), z, train=False)


def test_losses_match_hand_computations():
  real = jnp.array([2.0, -1.0])
  fake = jnp.array([0.5, -3.0])
  log_sigmoid = lambda v: -math.log1p(math.exp(-v))
  ce = lambda logit, target: -(target * log_sigmoid(logit) + (1 - target) * log_sigmoid(-logit))
  d_loss, g_loss = dcgan.non_saturating(real_logits=real, fake_logits=fake, real_label=0.9)
  expected_d = np.mean([ce(2.0, 0.9), ce(-1.0, 0.9)]) + np.mean([ce(0.5, 0.0), ce(-3.0, 0.0)])
  np.testing.assert_allclose(d_loss, expected_d, rtol=1e-6)
  np.testing.assert_allclose(g_loss, np.mean([ce(0.5, 1.0), ce(-3.0, 1.0)]), rtol=1e-6)

  d_loss, g_loss = dcgan.hinge(real_logits=real, fake_logits=fake)
  np.testing.assert_allclose(d_loss, np.mean([0.0, 2.0]) + np.mean([1.5, 0.0]), rtol=1e-6)
  np.testing.assert_allclose(g_loss, -np.mean([0.5, -3.0]), rtol=1e-6)

  d_loss, g_loss = dcgan.least_squares(real_logits=real, fake_logits=fake)
  np.testing.assert_allclose(d_loss, 0.5 * (np.mean([1.0, 4.0]) + np.mean([0.25, 9.0])), rtol=1e-6)
  np.testing.assert_allclose(g_loss, 0.5 * np.mean([0.25, 16.0]), rtol=1e-6)


def test_train_step_updates_both_networks_and_is_deterministic(task_and_state):
  _, task, state, batch = task_and_state
  step = jax.jit(task.train_step)
  new, metrics = step(state, batch, jax.random.key(4))
  again, metrics_again = step(state, batch, jax.random.key(4))
  chex.assert_trees_all_equal((new, metrics), (again, metrics_again))
  assert set(metrics) == {'d_loss', 'g_loss', 'd_real', 'd_fake'}
  assert 0 < float(metrics['d_real']) < 1 and 0 < float(metrics['d_fake']) < 1
  for old, updated in ((state.generator, new.generator), (state.discriminator, new.discriminator)):
    assert int(updated.step) == int(old.step) + 1
    for tree in ('params', 'batch_stats'):
      changed = jax.tree.map(lambda a, b: not np.allclose(a, b), getattr(old, tree),
                             getattr(updated, tree))
      assert all(jax.tree.leaves(changed)), tree  # Every parameter and statistic moved.
  other, _ = step(state, batch, jax.random.key(5))
  assert not np.allclose(other.generator.params['Dense_0']['kernel'],
                         new.generator.params['Dense_0']['kernel'])


def test_ema_follows_the_generator(task_and_state):
  _, _, state, batch = task_and_state
  state = state.replace(ema_params=state.generator.params)
  images = batch['image'] * 2 - 1
  step = jax.jit(functools.partial(dcgan.train_step, ema_decay=0.9))
  new, _ = step(state, {'image': images}, jax.random.key(0))
  expected = jax.tree.map(lambda e, p: 0.9 * e + 0.1 * p, state.generator.params,
                          new.generator.params)
  chex.assert_trees_all_close(new.ema_params, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_smoke_run_writes_samples_from_fixed_noise_and_resumes(tmp_path):
  config = config_lib.load_config('dcgan', 'smoke')
  config.dataset.download = False
  config.eval_at_start = True  # The step-0 samples start the progress strip.
  workdir = str(tmp_path / 'run')
  final = loop.train_and_evaluate(config, workdir)
  assert 0 < final['eval_d_real'] < 1
  for name in ('samples.png', 'samples_step000002.png', 'samples_step000004.png',
               'progress_strip.png'):
    assert os.path.exists(os.path.join(workdir, 'figures', name)), name
  noise = np.load(os.path.join(workdir, 'sample_noise.npy'))
  chex.assert_shape(noise, (64, 100))
  records = helpers.read_metrics(workdir)
  assert [r['step'] for r in records if 'd_loss' in r] == [2, 4]

  config.num_train_steps = 6
  loop.train_and_evaluate(config, workdir)
  np.testing.assert_array_equal(np.load(os.path.join(workdir, 'sample_noise.npy')), noise)
  with np.load(os.path.join(workdir, 'sample_progress.npz')) as progress:
    assert list(progress['steps']) == [0, 2, 4, 6]
