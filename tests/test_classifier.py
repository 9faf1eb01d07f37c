"""The MNIST classifier (gan_aec.classifier): augmentation, and learning the bundled digits."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_aec import classifier
from gan_aec.data import mnist
from gan_aec.data.batching import to_float
from gan_aec.run import config as config_lib, tasks


@pytest.fixture(scope='module')
def digits():
  return mnist.load_bundled()


def test_random_shift_translates_each_image_within_bounds():
  images = jnp.zeros((16, 28, 28, 1)).at[:, 13, 13, 0].set(1.0)
  shifted = classifier.random_shift(images, jax.random.key(0), 2)
  chex.assert_shape(shifted, images.shape)
  np.testing.assert_array_equal(shifted.sum(axis=(1, 2, 3)), np.ones(16))  # Nothing lost...
  offsets = np.argwhere(np.asarray(shifted[..., 0]))[:, 1:] - 13
  assert np.abs(offsets).max() <= 2 and len({tuple(o) for o in offsets}) > 3  # ...and moved.
  assert classifier.random_shift(images, jax.random.key(0), 0) is images


@pytest.mark.slow
def test_classifier_learns_the_bundled_digits(digits):
  config = config_lib.load_config('mnist_classifier', 'smoke')
  config.warmup_steps = 5
  config.num_train_steps = 60
  task = tasks.build_task(config)
  x, y = to_float(digits.train.images), digits.train.labels.astype(np.int32)
  state = task.create_state(jax.random.key(0), {'image': x[:1]})
  step = jax.jit(task.train_step)
  for i in range(60):
    idx = np.arange(i * 64, (i + 1) * 64)
    state, metrics = step(state, {'image': x[idx], 'label': y[idx]}, jax.random.key(i))
  sums = jax.jit(task.eval_step)(state, {'image': to_float(digits.test.images[:500]),
                                         'label': digits.test.labels[:500].astype(np.int32)},
                                 jax.random.key(0))
  assert float(sums['count']) == 500
  assert float(sums['accuracy']) / 500 > 0.85, sums  # 60 steps of 64 digits; chance is 0.1.
  features, logits = state.apply_fn({'params': state.params}, x[:4],
                                    method='features_and_logits')
  chex.assert_shape((features, logits), ((4, 128), (4, 10)))
  assert float(features.min()) >= 0.0  # Post-relu.
  with pytest.raises(ValueError, match='labelled MNIST'):
    config.dataset.name = 'celeb_a'
    tasks.build_task(config)
