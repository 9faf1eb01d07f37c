"""Runs that survive (in-process): exact resume, NaNs, and bad input that writes nothing."""

import hashlib
import os
import shutil
import signal

import jax
import numpy as np
import pytest

from gan_aec import errors
from gan_aec.data import mnist_import
from gan_aec.run import config as config_lib, loop, preemption, tasks
from tests import helpers

def smoke_config(model, tmp_path, **overrides):
  config = config_lib.load_config(model, 'smoke')
  config.dataset.download = False
  config.num_train_steps = 6
  config.eval_every_steps = 4
  for key, value in overrides.items():
    config[key] = value
  return config


def snapshot(path):
  """{relative file path: sha256} of everything under path, or None when it does not exist."""
  if not os.path.exists(path):
    return None
  files = {}
  for root, _, names in os.walk(path):
    for name in names:
      full = os.path.join(root, name)
      with open(full, 'rb') as f:
        files[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
  return files


@pytest.fixture
def stop_after(monkeypatch):
  """stop_after(n): the loop sees a SIGTERM request after its n-th step of the next run."""
  def arm(n):
    calls = {'count': 0}

    def requested(self, step):
      del self, step
      calls['count'] += 1
      return signal.SIGTERM if calls['count'] == n else None
    monkeypatch.setattr(preemption.StopRequests, 'requested', requested)
  return arm


@pytest.mark.slow
@pytest.mark.parametrize('model', ['autoencoder', 'vae', 'dcgan'])
def test_resume_after_a_stop_equals_the_uninterrupted_run(tmp_path, stop_after, monkeypatch,
                                                          model):
  # One evaluation, at the end (the VAE's IWAE evaluation is the slow part of these runs).
  settings = {'eval_every_steps': 6, 'eval_at_start': False}
  whole = str(tmp_path / 'whole')
  loop.train_and_evaluate(smoke_config(model, tmp_path, **settings), whole)

  parts = str(tmp_path / 'parts')
  stop_after(3)
  with pytest.raises(preemption.Preempted, match='SIGTERM at step 3'):
    loop.train_and_evaluate(smoke_config(model, tmp_path, **settings), parts)
  assert helpers.final_state(parts)[0] == 3
  monkeypatch.undo()
  loop.train_and_evaluate(smoke_config(model, tmp_path, **settings), parts)

  (step_a, state_a), (step_b, state_b) = helpers.final_state(whole), helpers.final_state(parts)
  assert step_a == step_b == 6
  jax.tree.map(np.testing.assert_array_equal, state_a, state_b)  # Bit-identical.
  assert helpers.scalar_records(parts) == helpers.scalar_records(whole)
  if model == 'dcgan':
    np.testing.assert_array_equal(np.load(os.path.join(whole, 'sample_noise.npy')),
                                  np.load(os.path.join(parts, 'sample_noise.npy')))


def test_records_after_the_resumed_checkpoint_are_dropped(tmp_path):
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(smoke_config('autoencoder', tmp_path), workdir)
  expected = helpers.scalar_records(workdir)
  # As after a kill: step 6's checkpoint never committed, its records (and half a line) remain.
  checkpoints = os.path.join(workdir, 'checkpoints')
  os.rename(os.path.join(checkpoints, '6'), os.path.join(tmp_path, 'moved'))
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a', encoding='utf-8') as f:
    f.write('{"step": 7, "loss": 0.')
  loop.train_and_evaluate(smoke_config('autoencoder', tmp_path), workdir)
  assert helpers.scalar_records(workdir) == expected


def test_a_restart_from_step_0_drops_the_killed_attempts_records(tmp_path):
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(smoke_config('autoencoder', tmp_path, eval_at_start=True), workdir)
  expected = helpers.scalar_records(workdir)
  assert expected[0]['step'] == 0  # The step-0 evaluation, which the restart writes again.
  # As after a kill before the first checkpoint committed: records, no checkpoint.
  shutil.rmtree(os.path.join(workdir, 'checkpoints'))
  loop.train_and_evaluate(smoke_config('autoencoder', tmp_path, eval_at_start=True), workdir)
  assert helpers.scalar_records(workdir) == expected


def test_a_nan_stops_the_run_and_never_checkpoints_the_broken_state(tmp_path, monkeypatch):
  build = tasks.build_task

  def build_with_nan_from_step_5(config):
    task = build(config)

    def poisoned(state, batch, rng):
      state, metrics = task.train_step(state, batch, rng)
      bad = state.step >= 5
      params = jax.tree.map(lambda p: jax.numpy.where(bad, jax.numpy.nan, p), state.params)
      metrics = {**metrics, 'loss': jax.numpy.where(bad, jax.numpy.nan, metrics['loss'])}
      return state.replace(params=params), metrics
    return tasks.Task(**{**task.__dict__, 'train_step': poisoned})
  monkeypatch.setattr(tasks, 'build_task', build_with_nan_from_step_5)

  workdir = str(tmp_path / 'run')
  config = smoke_config('autoencoder', tmp_path, num_train_steps=8, log_every_steps=4)
  with pytest.raises(errors.NonFiniteError) as raised:
    loop.train_and_evaluate(config, workdir)
  # Caught at step 6, a checkpoint step between two log steps: nothing of step 6 is saved.
  message = str(raised.value)
  assert 'Non-finite loss at step 6' in message and 'last good checkpoint is step 4' in message
  step, state = helpers.final_state(workdir)
  assert step == 4
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state['params']))


def _corrupt_latest_checkpoint(workdir):
  directory = os.path.join(workdir, 'checkpoints', '6')
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      if os.path.getsize(path) > 100 and 'metadata' not in name:
        with open(path, 'r+b') as f:
          f.truncate(os.path.getsize(path) // 2)


def test_a_damaged_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(tmp_path):
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(smoke_config('autoencoder', tmp_path), workdir)
  _corrupt_latest_checkpoint(workdir)
  config = smoke_config('autoencoder', tmp_path, num_train_steps=8)
  loop.train_and_evaluate(config, workdir)
  assert helpers.final_state(workdir)[0] == 8
  assert os.listdir(os.path.join(workdir, 'damaged_checkpoints')) == ['6']
  restarts = [r['step'] for r in helpers.read_metrics(workdir) if r.get('event') == 'run_start']
  assert restarts == [0, 4]  # Resumed from step 4, the checkpoint before the damaged one.


@pytest.mark.slow
def test_every_kind_of_checkpoint_file_damaged_still_resumes_with_the_right_state(tmp_path):
  """Cut short or overwritten, any file of the latest checkpoint: the run resumes from it when
  what it restores matches the saved state's hash (the file was not needed), else from the one
  before, with the damaged one set aside; never a traceback, never a wrong state."""
  run = str(tmp_path / 'run')
  loop.train_and_evaluate(smoke_config('autoencoder', tmp_path, num_train_steps=4), run)
  latest = os.path.join(run, 'checkpoints', '4')
  kinds = ['_CHECKPOINT_METADATA', os.path.join('default', '_METADATA'),
           os.path.join('default', 'manifest.ocdbt'), os.path.join('default', '_sharding')]
  for kind in kinds:
    for how in ('cut', 'overwritten'):
      workdir = str(tmp_path / f'{kind.replace(os.sep, "_")}_{how}')
      shutil.copytree(run, workdir)
      path = os.path.join(workdir, 'checkpoints', '4', kind)
      assert os.path.exists(path), sorted(os.listdir(latest))
      data = bytearray(open(path, 'rb').read())
      if how == 'cut':
        data = data[:len(data) // 2]
      else:
        data[len(data) // 2:len(data) // 2 + 16] = b'\xff' * 16
      with open(path, 'wb') as f:
        f.write(bytes(data))
      loop.train_and_evaluate(smoke_config('autoencoder', tmp_path, num_train_steps=6), workdir)
      restarts = [r['step'] for r in helpers.read_metrics(workdir) if r.get('event') == 'run_start']
      damaged = os.path.join(workdir, 'damaged_checkpoints')
      assert restarts[-1] == (2 if os.path.exists(damaged) else 4), (kind, how, restarts)
      if restarts[-1] == 4:  # Resumed from the damaged checkpoint: it restored what was saved.
        assert helpers.final_state(workdir)[0] == 6


def _write_damaged_mnist(tmp_path):
  data_dir = str(tmp_path / 'tfds')
  helpers.write_mnist_files(str(tmp_path / 'src'), num_train=40, num_test=20)
  path = mnist_import.write_mnist(mnist_import.mnist_splits(str(tmp_path / 'src')), data_dir)
  for name in os.listdir(path):
    if 'train.tfrecord' in name:
      with open(os.path.join(path, name), 'r+b') as f:
        f.truncate(300)
  return data_dir


@pytest.mark.parametrize('change, message', [
    (lambda c, t: c.update(model='gan'), "Unknown model 'gan'"),
    (lambda c, t: c.dataset.update(name='cifar10'), "Unknown dataset.name 'cifar10'"),
    (lambda c, t: c.update(image_size=64), 'image_size=64 is not available for mnist'),
    (lambda c, t: c.update(num_train_steps=0), 'num_train_steps must be a positive integer'),
    (lambda c, t: c.update(loss='wasserstein'), 'wasserstein'),
    (lambda c, t: c.update(batch_size=20000), 'larger than the training split'),
    (lambda c, t: (c.dataset.update(name='celeb_a'), c.sample_metrics.update(extractor=None)),
     'prepare_data --dataset=celeb_a'),
    (lambda c, t: c.dataset.update(name='celeb_a'), 'mnist-clf-v1 scores 28x28 MNIST digits'),
    (lambda c, t: c.dataset.update(data_dir=_write_damaged_mnist(t), offline_fallback=False),
     'cannot be read'),
])
def test_bad_input_stops_with_its_message_and_writes_nothing(tmp_path, change, message):
  config = smoke_config('dcgan', tmp_path)
  change(config, tmp_path)
  workdir = str(tmp_path / 'run')
  with pytest.raises(errors.UserError, match=message):
    loop.train_and_evaluate(config, workdir)
  assert not os.path.exists(workdir)


def test_a_batch_that_does_not_divide_the_devices_is_a_config_error(tmp_path):
  config = smoke_config('autoencoder', tmp_path, batch_size=10)
  with pytest.raises(errors.ConfigError, match='batch_size=10 is not divisible by the 4 devices'):
    config_lib.validate(config, num_devices=4)


def test_a_workdir_of_another_experiment_is_refused_unless_allowed(tmp_path):
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(smoke_config('autoencoder', tmp_path), workdir)
  before = snapshot(workdir)
  for other in (smoke_config('vae', tmp_path, num_train_steps=8),
                smoke_config('autoencoder', tmp_path, num_train_steps=8, learning_rate=0.5)):
    with pytest.raises(errors.WorkdirMismatchError, match='holds a run with a different config'):
      loop.train_and_evaluate(other, workdir)
    assert snapshot(workdir) == before
  # A longer run and other loop settings are a resume, not a different experiment.
  changed = smoke_config('autoencoder', tmp_path, num_train_steps=8, log_every_steps=1)
  changed.learning_rate = 0.5
  changed.allow_config_change = True
  loop.train_and_evaluate(changed, workdir)
  start = [r for r in helpers.read_metrics(workdir) if 'event' in r][-1]
  assert start['step'] == 6 and start['config_changes'] == {'learning_rate': [0.001, 0.5]}

