"""`python -m gan_aec.main` end to end, as a user runs it: offline fallback, outputs, resume."""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers

pytestmark = pytest.mark.slow  # The main job end to end, in subprocesses.

REPO = str(helpers.REPO)


def run_main(workdir, *flags):
  """Runs main on the smoke autoencoder config with an empty TFDS dir and no download."""
  command = [sys.executable, '-m', 'gan_aec.main', '--config=configs/autoencoder.py:smoke',
             f'--workdir={workdir}',
             '--config.dataset.download=False', *flags]
  return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                        check=False, env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})


@pytest.fixture(scope='module')
def first_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('main') / 'run')
  result = run_main(workdir, '--config.eval_at_start=True')  # Evaluations at steps 0 and 4.
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


def test_smoke_run_writes_metrics_figures_checkpoints_and_config(first_run):
  workdir, result = first_run
  assert 'bundled real MNIST test digits' in result.stderr  # The one fallback warning.
  records = helpers.read_metrics(workdir)
  start = records[0]
  assert start['event'] == 'run_start' and start['step'] == 0
  assert start['dataset.source'] == 'bundled_mnist_t10k' and start['train_examples'] == 8000
  train = [r for r in records if 'loss' in r]
  assert [r['step'] for r in train] == [2, 4]
  assert all(r['images_per_s'] > 0 for r in train)
  evals = [r for r in records if 'eval_loss' in r]
  assert [r['step'] for r in evals] == [0, 4]
  assert 0 < evals[-1]['eval_loss'] < 1 and evals[-1]['eval_psnr'] > 0
  assert os.path.exists(os.path.join(workdir, 'figures', 'reconstructions.png'))
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  with open(os.path.join(workdir, 'config.json'), encoding='utf-8') as f:
    config = json.load(f)
  assert config['dataset']['source'] == 'bundled_mnist_t10k' and config['model'] == 'autoencoder'
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))


def test_rerun_resumes_and_continues_the_step_count(first_run):
  workdir, _ = first_run
  result = run_main(workdir, '--config.num_train_steps=6')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resumed from' in result.stderr
  records = helpers.read_metrics(workdir)
  starts = [r for r in records if r.get('event') == 'run_start']
  assert [s['step'] for s in starts] == [0, 4]
  after = records[records.index(starts[1]) + 1:]
  assert [r['step'] for r in after if 'loss' in r] == [6]  # No step-0 evaluation on resume.
  assert '6' in os.listdir(os.path.join(workdir, 'checkpoints'))

  # The run is finished: the same command does nothing more.
  lines_before = len(records)
  result = run_main(workdir, '--config.num_train_steps=6')
  assert result.returncode == 0 and 'nothing to do' in result.stderr
  assert len(helpers.read_metrics(workdir)) == lines_before


def test_fallback_turned_off_fails_with_the_import_command(tmp_path):
  result = run_main(str(tmp_path / 'run'), '--config.dataset.offline_fallback=False')
  assert result.returncode != 0
  assert 'python -m gan_aec.prepare_data' in result.stderr


@pytest.mark.parametrize('flag, message', [
    ('--config.dataset.nmae=mnist',
     "--config.dataset.nmae: config.dataset has no field 'nmae'. Did you mean 'name'?"),
    ('--config.num_train_steps=0', 'error: config.num_train_steps must be a positive integer'),
])
def test_a_bad_flag_exits_1_with_one_message_and_creates_nothing(tmp_path, flag, message):
  workdir = str(tmp_path / 'run')
  result = run_main(workdir, flag)
  assert result.returncode == 1
  assert message in result.stderr and 'Traceback' not in result.stderr
  assert not os.path.exists(workdir)


def test_a_disk_that_refuses_a_write_is_named_however_the_error_reaches_main():
  from gan_aec import main  # pylint: disable=g-import-not-at-top
  full = OSError(28, 'No space left on device')
  assert main._disk_problem(full) == '[Errno 28] No space left on device'
  try:  # TensorStore's error from orbax's save thread, raised again by orbax in the main thread.
    try:
      raise ValueError('RESOURCE_EXHAUSTED: Failed writing: "x": No space left on device '
                       "[os_error_code='28']")
    except ValueError as inner:
      raise RuntimeError('Save Finalize thread (save_finalize) failed.') from inner
  except RuntimeError as outer:
    assert main._disk_problem(outer).startswith('No space left on device (RESOURCE_EXHAUSTED')
  assert main._disk_problem(ValueError('a bug')) is None  # Anything else keeps its traceback.
  assert main._disk_problem(FileNotFoundError(2, 'No such file')) is None


@pytest.mark.parametrize('flag, message', [
    ('--config.laten_dim=4', "Did you mean 'latent_dim'?"),
    ('--config.batch_size=0', 'config.batch_size must be a positive integer'),
    ('--config.sweep.learning_rate=1e-3,0', 'must hold positive values'),
])
def test_a_bad_setting_is_reported_before_jax_is_imported(tmp_path, flag, message):
  # Importing JAX takes seconds: what the command line and the config alone show is reported
  # without it.
  probe = ('import runpy, sys\n'
           f'sys.argv = ["gan_aec.main", "--config=vae:smoke", "--workdir={tmp_path}/run",'
           f' "{flag}"]\n'
           'try:\n'
           '  runpy.run_module("gan_aec.main", run_name="__main__")\n'
           'except SystemExit as e:\n'
           '  print("exit", e.code, "jax" in sys.modules)\n')
  result = subprocess.run([sys.executable, '-c', probe], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
  assert message in result.stderr
  assert result.stdout.split() == ['exit', '1', 'False']
