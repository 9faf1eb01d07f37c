"""The test helpers themselves: a comparison that misses a difference would pass every test
that uses it."""

import numpy as np
import pytest

from tests import helpers


def state(**extra):
  return {'params': {'w': np.ones((2, 3), np.float32)}, 'step': np.asarray(3), **extra}


def test_assert_same_state_checks_structure_and_every_leaf():
  helpers.assert_same_state(state(), state())
  with pytest.raises(AssertionError):  # A missing trailing field (e.g. an EMA copy).
    helpers.assert_same_state(state(ema_params={'w': np.ones(2)}), state())
  with pytest.raises(AssertionError):
    helpers.assert_same_state(state(), state(ema_params={'w': np.ones(2)}))
  other = state()
  other['params']['w'] = other['params']['w'] + 1.0
  with pytest.raises(AssertionError, match='params/w'):
    helpers.assert_same_state(state(), other)
  with pytest.raises(AssertionError):  # Shapes must agree.
    helpers.assert_same_state(state(), {'params': {'w': np.ones((3, 2), np.float32)},
                                        'step': np.asarray(3)})


def test_biases_that_feed_a_batchnorm_are_exempt_from_values_only():
  def gan(bias):
    return {'generator': {'params': {'ConvTranspose_0': {'bias': bias, 'kernel': np.ones(2)}}}}
  helpers.assert_same_state(gan(np.zeros(4)), gan(np.ones(4)))
  with pytest.raises(AssertionError):
    helpers.assert_same_state(gan(np.zeros(4)), gan(np.zeros(5)))
