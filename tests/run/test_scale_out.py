"""Data parallelism is invisible in the results: 1 device, 8 devices and 2 processes x 4 devices
train to the same parameters and metrics (float32 tolerance), BatchNorm included."""

import os
import signal
import socket
import subprocess
import sys

import pytest

from gan_aec.run import loop
from tests import helpers
from tests.run import scale_out_worker, test_preemption

pytestmark = pytest.mark.slow  # 8 simulated devices and 2 cooperating processes.

REPO = str(helpers.REPO)
MODELS = ('autoencoder', 'dcgan')  # Adam without and with BatchNorm.


def env_with_devices(count: int) -> dict:
  return {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2',
          'XLA_FLAGS': f'--xla_force_host_platform_device_count={count}'}


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
  helpers.assert_same_run(os.path.join(one, model), os.path.join(eight, model))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _run_two_processes(workdir, steps, config='configs/autoencoder.py:smoke', extra=(),
                       devices_per_process=4):
  port = _free_port()
  processes = [subprocess.Popen(
      [sys.executable, '-m', 'gan_aec.main', f'--config={config}',
       f'--workdir={workdir}',
       '--config.dataset.download=False', f'--config.num_train_steps={steps}',
       '--config.eval_at_start=False', '--config.eval_every_steps=4', *extra,
       f'--coordinator_address=localhost:{port}', '--num_processes=2', f'--process_id={i}'],
      cwd=REPO, env=env_with_devices(devices_per_process),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
  for i, process in enumerate(processes):
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, f'process {i}:\n{stderr[-3000:]}'
  return stderr


# The autoencoder, not the DCGAN: a GAN's Adam steps turn the last-bit differences of another
# all-reduce order (gloo across processes) into whole-step differences on parameters with near-zero
# gradients, so 4 of its steps agree only to ~1e-3 on some BatchNorm biases, and not always to the
# tolerance; the 8-device test above covers BatchNorm over a sharded batch.
def test_two_processes_train_checkpoint_and_resume_like_one(runs, tmp_path):
  _, eight = runs
  workdir = str(tmp_path / 'two_processes')
  _run_two_processes(workdir, steps=2)
  assert helpers.final_state(workdir)[0] == 2
  stderr = _run_two_processes(workdir, steps=4)
  assert 'Resumed from' in stderr
  starts = [r for r in helpers.read_metrics(workdir) if 'event' in r]
  assert [(r['step'], r['devices'], r['processes']) for r in starts] == [(0, 8, 2), (2, 8, 2)]
  helpers.assert_same_run(workdir, os.path.join(eight, 'autoencoder'), skip_eval_at=(2,))
  assert os.path.exists(os.path.join(workdir, 'figures', 'reconstructions.png'))


def test_eight_replicas_on_two_processes_of_two_devices_train_like_one_device(tmp_path):
  """config.num_seeds=8 over 2 processes x 2 devices (two replicas per device, trained in two
  calls of each step: gan_aec.run.sharding.ReplicaGroups) = the same on 1 device (eight calls).

  The autoencoder: the VAE's bias-corrected RMSprop (first update lr * sign(g)) turns the two
  layouts' float32 rounding into differences of up to half a learning rate on a few of its four
  replicas' 2 million parameters."""
  one = str(tmp_path / 'one_device')
  config = scale_out_worker.smoke_config('autoencoder')
  config.num_seeds = 8
  loop.train_and_evaluate(config, one)
  two = str(tmp_path / 'two_processes')
  _run_two_processes(two, steps=4, config='configs/autoencoder.py:smoke',
                     extra=('--config.num_seeds=8',), devices_per_process=2)
  start = helpers.read_metrics(two)[0]
  assert (start['devices'], start['processes'], len(start['replicas'])) == (4, 2, 8)
  helpers.assert_same_run(two, one)


@pytest.mark.parametrize('service', [True, False])
def test_a_sigterm_to_one_process_stops_both_after_the_same_step_with_a_checkpoint(service,
                                                                                  tmp_path):
  """The process that got no signal learns of it and stops too: through JAX's preemption service,
  or (with the service off) an allgather every few steps."""
  workdir, port = str(tmp_path / 'run'), _free_port()
  env = {**env_with_devices(1), 'JAX_ENABLE_PREEMPTION_SERVICE': str(service).lower()}
  processes = [subprocess.Popen(
      test_preemption.command(workdir, 100000, f'--coordinator_address=localhost:{port}',
                              '--num_processes=2', f'--process_id={i}'),
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  test_preemption.wait_for_training(processes[0], workdir, starts=1)
  processes[1].send_signal(signal.SIGTERM)  # Not the process that writes the metrics.
  outputs = [p.communicate(timeout=300)[1] for p in processes]
  stopped = []
  for i, (process, stderr) in enumerate(zip(processes, outputs)):
    assert process.returncode == 128 + signal.SIGTERM, f'process {i}:\n{stderr[-3000:]}'
    stopped.append(int(stderr.split('Stopped by SIGTERM at step ')[1].split(';')[0]))
  assert stopped[0] == stopped[1] == helpers.committed_steps(workdir)[-1]
  how = "JAX's preemption service" if service else 'an allgather every'
  assert f'stops all 2 after the same step ({how}' in outputs[0]


STRAGGLER = '''
import time
from gan_aec.run import loop
_train_and_evaluate = loop.train_and_evaluate
def _late(*args, **kwargs):
  result = _train_and_evaluate(*args, **kwargs)
  time.sleep({delay})  # This process finishes its run {delay} s after the other.
  return result
loop.train_and_evaluate = _late
'''


def test_a_process_finishing_later_than_the_other_does_not_fail_the_run(tmp_path):
  hook = tmp_path / 'straggler'
  hook.mkdir()
  (hook / 'sitecustomize.py').write_text(STRAGGLER.format(delay=10), encoding='utf-8')
  port = _free_port()
  common = [sys.executable, '-m', 'gan_aec.main', '--config=configs/autoencoder.py:smoke',
            f'--workdir={tmp_path / "run"}',
            '--config.dataset.download=False', f'--coordinator_address=localhost:{port}',
            '--num_processes=2', '--shutdown_timeout_s=120']
  late_env = {**env_with_devices(1),
              'PYTHONPATH': os.pathsep.join([str(hook), REPO, os.environ.get('PYTHONPATH', '')])}
  processes = [subprocess.Popen(common + [f'--process_id={i}'], cwd=REPO,
                                env=late_env if i == 1 else env_with_devices(1),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
  outputs = [p.communicate(timeout=900)[1] for p in processes]
  for i, (process, stderr) in enumerate(zip(processes, outputs)):
    assert process.returncode == 0, f'process {i}:\n{stderr[-3000:]}'
  assert 'waiting for the other 1 process(es) to finish' in outputs[0]
  waited = float(outputs[0].split('All 2 processes finished (waited ')[1].split(' s)')[0])
  assert waited >= 5  # It did wait for the straggler, and said so.
