"""Real processes stopped from outside: SIGTERM saves and exits 143; SIGKILL at random moments
(training and mid-checkpoint) never costs a loadable checkpoint, and the resumed run ends exactly
where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests import helpers

pytestmark = pytest.mark.slow  # SIGTERM and SIGKILL of real training processes.

REPO = str(helpers.REPO)
KILL_TRIALS = 8  # ~5 s each; 20 cost 100 s of a suite that must stay well under 15 min.


def command(workdir, steps, *flags):
  """The smoke autoencoder on the bundled digits, saving at every step (so kills land mid-save)."""
  return [sys.executable, '-m', 'gan_aec.main', '--config=configs/autoencoder.py:smoke',
          f'--workdir={workdir}',
          '--config.dataset.download=False', f'--config.num_train_steps={steps}',
          '--config.checkpoint_every_steps=1', '--config.log_every_steps=1',
          '--config.eval_every_steps=100000', '--config.eval_at_start=False', *flags]


def environment():
  # conftest.py's persistent compilation cache is inherited: the many processes compile from it.
  return {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}


def records(workdir):
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  out = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except ValueError:
        pass  # A line being written (or cut by a kill).
  return out


def wait_for_training(process, workdir, starts, timeout_s=300):
  """Blocks until this process (the `starts`-th start of the run) has logged a trained step."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if process.poll() is not None:
      raise AssertionError(f'exited {process.returncode} before training:\n'
                           f'{process.stderr.read()[-3000:]}')
    lines = records(workdir)
    begun = [i for i, r in enumerate(lines) if 'event' in r]
    if len(begun) == starts and any('loss' in r for r in lines[begun[-1]:]):
      return
    time.sleep(0.02)
  raise AssertionError('no training step within the timeout')


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path):
  workdir = str(tmp_path / 'run')
  env = environment()
  process = subprocess.Popen(command(workdir, 100000), cwd=REPO, env=env, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  wait_for_training(process, workdir, starts=1)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  stopped = int(stderr.split('Stopped by SIGTERM at step ')[1].split(';')[0])
  assert helpers.committed_steps(workdir)[-1] == stopped
  assert 'Re-run the same command to resume' in stderr

  result = subprocess.run(command(workdir, stopped + 2), cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resumed from' in result.stderr
  assert [r['step'] for r in records(workdir) if 'event' in r] == [0, stopped]
  assert helpers.committed_steps(workdir)[-1] == stopped + 2


def test_sigkill_at_random_moments_never_loses_the_run(tmp_path):
  workdir = str(tmp_path / 'killed')
  env = environment()
  rng = np.random.default_rng(0)
  outcomes = []
  for trial in range(KILL_TRIALS):
    process = subprocess.Popen(command(workdir, 100000), cwd=REPO, env=env, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_training(process, workdir, starts=trial + 1)
    time.sleep(rng.uniform(0.0, 0.4))
    process.kill()
    process.communicate()
    half_written = [n for n in os.listdir(os.path.join(workdir, 'checkpoints'))
                    if not n.isdigit()]
    committed = helpers.committed_steps(workdir)
    # -1: killed before the first save committed (nothing saved yet, so nothing lost).
    outcomes.append((committed[-1] if committed else -1, bool(half_written)))
  print('\nkill trials (latest committed step, killed mid-save):', outcomes)
  steps = [step for step, _ in outcomes]
  assert steps == sorted(steps)  # Every restart resumed: the run only ever moved forward.

  # Finish the killed run a few steps on, and run the same schedule uninterrupted.
  total = steps[-1] + 3
  for directory in (workdir, str(tmp_path / 'whole')):
    result = subprocess.run(command(directory, total), cwd=REPO, env=env, text=True,
                            capture_output=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
  (step_a, state_a), (step_b, state_b) = (helpers.final_state(workdir),
                                          helpers.final_state(str(tmp_path / 'whole')))
  assert step_a == step_b == total
  jax.tree.map(np.testing.assert_array_equal, state_a, state_b)  # Bit-identical.
  assert helpers.scalar_records(workdir) == helpers.scalar_records(str(tmp_path / 'whole'))
