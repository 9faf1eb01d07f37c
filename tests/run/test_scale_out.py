"""Data parallelism is invisible in the results: 1 device, 8 devices and 2 processes x 4 devices
train to the same parameters and metrics (float32 tolerance), BatchNorm included."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import helpers
from tests.run import scale_out_worker

pytestmark = pytest.mark.slow  # 8 simulated devices and 2 cooperating processes.

REPO = str(helpers.REPO)
MODELS = ('autoencoder', 'vae', 'dcgan')


def env_with_devices(count: int) -> dict:
  return {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2',
          'XLA_FLAGS': f'--xla_force_host_platform_device_count={count}'}


# Per-channel biases that feed a BatchNorm (the seed's DCGAN keeps them): BatchNorm subtracts the
# per-channel batch mean, so their gradient is exactly zero and what reaches them is float rounding
# noise, which Adam scales up to a full lr-sized step in a random direction. They do not change the
# function and are not comparable between two reduction orders; every other parameter and
# statistic is.
FEEDS_BATCHNORM = {'generator': ('ConvTranspose_0', 'ConvTranspose_1'),
                   'discriminator': ('Conv_1', 'Conv_2')}


def _feeds_batchnorm(path: str) -> bool:
  return any(f"['{net}']" in path and f"['{layer}']['bias']" in path
             for net, layer_names in FEEDS_BATCHNORM.items() for layer in layer_names)


def assert_same_run(a, b, *, skip_eval_at=()):
  """Same final state and metrics.jsonl values; `skip_eval_at`: steps where only run `a`
  evaluated (the end of an earlier, shorter part of it)."""
  (step_a, state_a), (step_b, state_b) = helpers.final_state(a), helpers.final_state(b)
  assert step_a == step_b
  compared = 0
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(state_a), jax.tree.leaves(state_b)):
    if not _feeds_batchnorm(jax.tree_util.keystr(path)):
      # Float32 sums in another order differ in the last bits; Adam and RMSprop divide a
      # gradient by its own running scale, which turns that into up to ~1e-5 on a parameter
      # whose gradient is near zero. 1e-4 is 1% of one RMSprop step at lr 1e-3.
      np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4, err_msg=jax.tree_util.keystr(path))
      compared += 1
  assert compared > 10
  records_a = [r for r in helpers.scalar_records(a)
               if not (r['step'] in skip_eval_at and all(k.startswith('eval_') or k == 'step'
                                                         for k in r))]
  records_b = helpers.scalar_records(b)
  assert [sorted(r) for r in records_a] == [sorted(r) for r in records_b]
  for ra, rb in zip(records_a, records_b):
    for key in ra:
      np.testing.assert_allclose(ra[key], rb[key], rtol=1e-3, atol=1e-5, err_msg=key)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Each model trained on 1 device (this process) and on 8 (a subprocess)."""
  root = tmp_path_factory.mktemp('scale_out')
  one, eight = str(root / 'one'), str(root / 'eight')
  scale_out_worker.main(one, list(MODELS))
  result = subprocess.run([sys.executable, '-m', 'tests.run.scale_out_worker', eight, *MODELS],
                          cwd=REPO, env=env_with_devices(8), capture_output=True, text=True,
                          timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return one, eight


@pytest.mark.parametrize('model', MODELS)
def test_one_device_and_eight_devices_train_the_same(runs, model):
  one, eight = runs
  start = helpers.read_metrics(os.path.join(eight, model))[0]
  assert start['devices'] == 8
  assert_same_run(os.path.join(one, model), os.path.join(eight, model))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run_two_processes(workdir, empty_data_dir, steps):
  port = _free_port()
  processes = [subprocess.Popen(
      [sys.executable, '-m', 'gan_aec.main', '--config=configs/dcgan.py:smoke',
       f'--workdir={workdir}', f'--config.dataset.data_dir={empty_data_dir}',
       '--config.dataset.download=False', f'--config.num_train_steps={steps}',
       '--config.eval_at_start=False', '--config.eval_every_steps=4',
       '--config.cpu_data_parallel=True',
       f'--coordinator_address=localhost:{port}', '--num_processes=2', f'--process_id={i}'],
      cwd=REPO, env=env_with_devices(4), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  for i, process in enumerate(processes):
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, f'process {i}:\n{stderr[-3000:]}'
  return stderr


def test_two_processes_train_checkpoint_and_resume_like_one(runs, tmp_path):
  _, eight = runs
  workdir = str(tmp_path / 'two_processes')
  _run_two_processes(workdir, str(tmp_path / 'empty_tfds'), steps=2)
  assert helpers.final_state(workdir)[0] == 2
  stderr = _run_two_processes(workdir, str(tmp_path / 'empty_tfds'), steps=4)
  assert 'Resumed from' in stderr
  starts = [r for r in helpers.read_metrics(workdir) if 'event' in r]
  assert [(r['step'], r['devices'], r['processes']) for r in starts] == [(0, 8, 2), (2, 8, 2)]
  assert_same_run(workdir, os.path.join(eight, 'dcgan'), skip_eval_at=(2,))
  assert os.path.exists(os.path.join(workdir, 'figures', 'samples.png'))
