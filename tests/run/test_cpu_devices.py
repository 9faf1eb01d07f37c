"""One CPU device per core (gan_aec.run.cpu_devices) and micro-batching of a sharded batch."""

import os
import subprocess
import sys

import jax
import pytest

from gan_aec.run import cpu_devices
from tests import helpers

REPO = str(helpers.REPO)


def test_device_count_divides_every_batch_size():
  assert cpu_devices.device_count_for([200, 1000], cores=2) == 2
  assert cpu_devices.device_count_for([200, 1000], cores=3) == 2
  assert cpu_devices.device_count_for([16, 1000], cores=16) == 8
  assert cpu_devices.device_count_for([7], cores=4) == 1


def test_split_sets_jax_option_only_when_it_can_take_effect(monkeypatch):
  calls = []

  def update(name, value):  # JAX's own refusal once a backend runs.
    if running['value']:
      raise RuntimeError('jax_num_cpu_devices config should be updated before backends are '
                         'initialized')
    calls.append((name, value))

  running = {'value': False}
  monkeypatch.setattr(jax.config, 'update', update)
  monkeypatch.setattr(cpu_devices, 'available_cores', lambda: 4)
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_enable_fast_math=false')
  monkeypatch.delenv('JAX_NUM_CPU_DEVICES', raising=False)
  assert cpu_devices.split_into_devices([200, 1000]) == 4
  assert calls == [('jax_num_cpu_devices', 4)]
  assert cpu_devices.split_into_devices([200], num_replicas=4) == 4  # 4 replicas, 1 device each.
  assert cpu_devices.split_into_devices([7], num_replicas=2) == 2  # Replicas need no batch split.
  # A user's own device count stays.
  calls.clear()
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=3')
  assert cpu_devices.split_into_devices([200]) is None
  monkeypatch.setenv('XLA_FLAGS', '')
  monkeypatch.setenv('JAX_NUM_CPU_DEVICES', '3')
  assert cpu_devices.split_into_devices([200]) is None
  assert not calls
  # JAX already running: the option can no longer take effect.
  monkeypatch.delenv('JAX_NUM_CPU_DEVICES')
  running['value'] = True
  assert cpu_devices.split_into_devices([200]) is None


_SHARDED_MICROBATCHES = r'''
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from gan_aec import microbatching
assert jax.device_count() == 4
mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))

def loss_sum(w, batch, noise):
  pred = jnp.tanh((batch['x'] + noise) @ w)
  return jnp.sum((pred - batch['y']) ** 2), jnp.sum(pred)

rng = np.random.default_rng(0)
w = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
batch = {'x': rng.normal(size=(24, 5)).astype(np.float32),
         'y': rng.normal(size=(24, 3)).astype(np.float32)}
noise = rng.normal(size=(24, 5)).astype(np.float32)
whole = jax.value_and_grad(loss_sum, has_aux=True)(w, batch, noise)

def step(w, batch, noise):
  with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
    return microbatching.sum_value_and_grad(loss_sum, w, batch, 4, noise)

batch, noise = jax.device_put((batch, noise), NamedSharding(mesh, P('data')))
step = jax.jit(step)
# 6 images per device: micro-batches of 4 and 2 on each, summed across devices.
for a, b in zip(jax.tree.leaves(step(w, batch, noise)), jax.tree.leaves(whole)):
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
assert 'manual_computation' in step.lower(w, batch, noise).as_text()  # Per-device micro-batches.
print('same gradient')
'''


@pytest.mark.slow
def test_sharded_batch_is_micro_batched_per_device_with_the_same_gradient():
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=4',
         'TF_CPP_MIN_LOG_LEVEL': '2'}
  result = subprocess.run([sys.executable, '-c', _SHARDED_MICROBATCHES], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'same gradient' in result.stdout


def test_wait_for_each_step_only_with_a_batch_split_over_local_cpu_devices():
  import jax  # pylint: disable=g-import-not-at-top
  one = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  assert not cpu_devices.wait_for_each_step(one)
  if jax.local_device_count() > 1 and jax.default_backend() == 'cpu':
    several = jax.make_mesh((2,), ('data',), devices=jax.devices()[:2])
    assert cpu_devices.wait_for_each_step(several)
    # A replica per device: no all-reduce between them, so their steps may queue.
    replicas = jax.make_mesh((2, 1), ('replica', 'data'), devices=jax.devices()[:2])
    assert not cpu_devices.wait_for_each_step(replicas)


@pytest.mark.slow
@pytest.mark.parametrize('num_seeds', [1, 4])
def test_many_queued_steps_on_two_cpu_devices_do_not_deadlock(tmp_path, num_seeds):
  # Without the wait for each step, 400 steps dispatched between two logs made XLA:CPU's
  # all-reduce wait forever (the process aborted); the short timeouts make such a hang fail fast.
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2',
         'XLA_FLAGS': ('--xla_force_host_platform_device_count=2 '
                       '--xla_cpu_collective_call_terminate_timeout_seconds=10 '
                       '--xla_cpu_collective_call_warn_stuck_timeout_seconds=5')}
  result = subprocess.run(
      [sys.executable, '-m', 'gan_aec.main', '--config=configs/autoencoder.py:smoke',
       f'--workdir={tmp_path}/run',
       '--config.dataset.download=False', '--config.num_train_steps=400',
       '--config.log_every_steps=400', '--config.eval_every_steps=400',
       '--config.eval_at_start=False', '--config.checkpoint_every_steps=400',
       f'--config.num_seeds={num_seeds}'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'on 2 device(s)' in result.stderr and 'Finished at step 400' in result.stderr
