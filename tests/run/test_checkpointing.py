"""Checkpoints (gan_aec.run.checkpointing): interval saves, restore, damage, the best-FID state."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import orbax.checkpoint as ocp

from gan_aec import errors
from gan_aec.run import checkpointing, sharding
from gan_aec.run.workdir import Layout


def state(value: float) -> dict:
  return {'params': {'w': jnp.full((3, 2), value)}, 'step': jnp.asarray(int(value), jnp.int32)}


def abstract(tree):
  """The restore target of a state: shapes, dtypes and shardings."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def checkpoints(tmp_path) -> str:
  return Layout(str(tmp_path)).checkpoints


def test_saves_on_the_interval_keeps_the_newest_and_restores_exactly(tmp_path):
  checkpointer = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=2, max_to_keep=2)
  assert checkpointer.latest_step() is None
  assert not checkpointer.should_save(3) and checkpointer.should_save(4)
  for step in range(1, 9):
    checkpointer.save(step, state(step))
  assert checkpointer.save(9, state(9), force=True)
  checkpointer.close()
  directory = os.path.join(str(tmp_path), 'checkpoints')
  assert checkpointing.committed_steps(directory) == [8, 9]

  again = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=2)
  assert again.latest_step() == 9
  restored = again.restore(abstract(state(0)))
  again.close()
  np.testing.assert_array_equal(restored['params']['w'], np.full((3, 2), 9.0))
  assert int(restored['step']) == 9
  on_one = checkpointing.restore_on_one_device(directory, 8)  # As saved: nested dicts.
  np.testing.assert_array_equal(on_one['params']['w'], np.full((3, 2), 8.0))


def test_a_half_written_checkpoint_is_not_a_committed_step(tmp_path):
  directory = tmp_path / 'checkpoints'
  (directory / '4').mkdir(parents=True)
  (directory / '6.orbax-checkpoint-tmp-123').mkdir()
  assert checkpointing.committed_steps(str(directory)) == [4]
  assert checkpointing.committed_steps(str(tmp_path / 'absent')) == []


def big_state(step: int) -> dict:
  """A state whose array lies in a data file of its own (random, so it does not compress)."""
  w = jax.random.normal(jax.random.key(step), (256, 256))
  return {'params': {'w': w}, 'step': jnp.asarray(step, jnp.int32)}


def _save(tmp_path, steps):
  checkpointer = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=1)
  for step in steps:
    checkpointer.save(step, big_state(step))
  checkpointer.close()


def _damage(tmp_path, step, how):
  folder = os.path.join(str(tmp_path), 'checkpoints', str(step), 'default')
  files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
  if how == 'garbage files':
    for path in files:
      with open(path, 'wb') as f:
        f.write(b'garbage')
  else:  # Bytes in the middle of the largest array file: it still reads, as other values.
    path = max((p for p in files if os.sep + 'd' + os.sep in p), key=os.path.getsize)
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2:len(data) // 2 + 8] = b'\x7f' * 8
    with open(path, 'wb') as f:
      f.write(data)


@pytest.mark.parametrize('how', ['garbage files', 'overwritten bytes'])
def test_a_damaged_latest_checkpoint_is_moved_aside_and_the_one_before_restored(tmp_path, how):
  _save(tmp_path, [1, 2])
  _damage(tmp_path, 2, how)
  again = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=1)
  with pytest.raises(errors.CheckpointError, match='checkpoints/2') as error:
    again.restore(abstract(big_state(0)), 2)
  assert '\n' not in str(error.value)  # One line.
  step, restored = again.restore_latest(abstract(big_state(0)))
  again.close()
  assert step == 1 and int(restored['step']) == 1
  np.testing.assert_array_equal(restored['params']['w'], big_state(1)['params']['w'])
  assert os.listdir(os.path.join(str(tmp_path), 'damaged_checkpoints')) == ['2']
  assert checkpointing.committed_steps(checkpoints(tmp_path)) == [1]


def test_a_damaged_only_checkpoint_or_another_model_stops_and_moves_nothing(tmp_path):
  _save(tmp_path, [1, 2])
  other_model = abstract({'params': {'w': jnp.zeros((5, 5))}, 'step': jnp.zeros((), jnp.int32)})
  again = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=1)
  with pytest.raises(errors.CheckpointError, match=r'move it aside \(mv .*checkpoints/2'):
    again.restore_latest(other_model)
  again.close()
  assert checkpointing.committed_steps(checkpoints(tmp_path)) == [1, 2]
  shutil.rmtree(os.path.join(str(tmp_path), 'checkpoints', '1'))
  _damage(tmp_path, 2, 'garbage files')
  with pytest.raises(errors.CheckpointError, match='cannot be read'):
    checkpointing.restore_on_one_device(os.path.join(str(tmp_path), 'checkpoints'), 2)
  again = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=1)
  with pytest.raises(errors.CheckpointError, match='no earlier checkpoint'):
    again.restore_latest(abstract(big_state(0)))
  again.close()
  assert checkpointing.committed_steps(checkpoints(tmp_path)) == [2]


def test_keep_every_steps_keeps_those_checkpoints_beside_the_newest(tmp_path):
  checkpointer = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=1, max_to_keep=2,
                                            keep_every_steps=3)
  for step in range(1, 9):
    checkpointer.save(step, state(step))
  checkpointer.close()
  assert checkpointing.committed_steps(checkpoints(tmp_path)) == [3, 6, 7, 8]


def test_best_checkpoint_keeps_only_the_lowest_metric_across_restarts(tmp_path):
  best = checkpointing.BestCheckpointer(Layout(str(tmp_path)).replica(0).best_checkpoint)
  assert best.best() is None
  assert best.offer(10, state(10), 5.0)
  assert not best.offer(20, state(20), 7.0)
  assert best.offer(30, state(30), 3.0)
  best.close()
  again = checkpointing.BestCheckpointer(Layout(str(tmp_path)).replica(0).best_checkpoint)
  assert again.best() == (30, 3.0)
  assert not again.offer(40, state(40), 3.0)  # Not strictly lower.
  again.close()
  assert os.listdir(os.path.join(str(tmp_path), 'best_checkpoint')) == ['30']
  restored = checkpointing.restore_on_one_device(os.path.join(str(tmp_path), 'best_checkpoint'),
                                                 30, jax.eval_shape(lambda: state(0)))
  assert int(restored['step']) == 30


def test_a_one_replica_run_saves_its_one_model_and_restores_the_replica_axis(tmp_path):
  mesh = sharding.make_mesh(None, 1)
  stacked = jax.device_put(jax.tree.map(lambda x: x[None], state(3)),
                           sharding.replica_sharding(mesh))
  checkpointer = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=1, squeeze=True)
  assert checkpointer.save(3, stacked)
  assert not checkpointer.save(3, stacked)  # Already saved; and 3 is on the interval.
  checkpointer.close()
  saved = checkpointing.restore_on_one_device(checkpoints(tmp_path), 3)  # As saved.
  assert saved['params']['w'].shape == (3, 2)
  again = checkpointing.Checkpointer(checkpoints(tmp_path), every_steps=1, squeeze=True)
  restored = again.restore(abstract(stacked))
  again.close()
  assert restored['params']['w'].shape == (1, 3, 2)
  assert restored['params']['w'].sharding == stacked['params']['w'].sharding
  np.testing.assert_array_equal(restored['params']['w'], stacked['params']['w'])
  on_one = checkpointing.restore_replicas_on_one_device(
      checkpoints(tmp_path), 3, jax.eval_shape(lambda: state(0)), num_replicas=1)
  np.testing.assert_array_equal(on_one['step'], [3])
