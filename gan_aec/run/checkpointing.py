"""The one place that talks to orbax: a run's checkpoints in `WORKDIR/checkpoints/<step>/`.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a process
killed mid-save leaves the previous checkpoint as the latest loadable one (the half-written folder
is ignored, and removed when the next run opens the directory). A committed checkpoint that fails to
restore (a file damaged later, or a state of another shape) raises CheckpointError saying which one
and how to fall back to the one before.
"""

from __future__ import annotations

import os
from typing import Any

from etils import epath
from etils.epath import backend as epath_backend
import jax
import orbax.checkpoint as ocp

from gan_aec import errors
from gan_aec.run import workdir as run_workdir


MAX_TO_KEEP = 3  # Checkpoints a run keeps (the newest).


class Checkpointer:
  """A run's training states in `directory` (its Layout's checkpoints): saves every `every_steps`
  steps (and when forced), keeps the newest `max_to_keep`.

  The loop's state carries a replica axis [R, ...]; a one-replica run's checkpoints hold the
  state without it (`squeeze`), as the one model it is, so that they restore anywhere a single
  model's state does (gan_aec.evaluate, a researcher's own code).
  """

  def __init__(self, directory: str, every_steps: int, max_to_keep: int = MAX_TO_KEEP, *,
               squeeze: bool = False):
    self.directory = directory
    self.squeeze = squeeze
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(every_steps),
            preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep),
            create=True, cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state: Any, step: int | None = None) -> Any:
    """Restores `step` (default: latest) into the structure, dtypes and shardings of
    abstract_state (the stacked [R, ...] state, e.g. from jax.eval_shape)."""
    step = self.latest_step() if step is None else step
    try:
      if not self.squeeze:
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
      one = jax.tree.map(_squeezed_abstract, abstract_state)
      restored = self._manager.restore(step, args=ocp.args.StandardRestore(one))
      return jax.jit(_add_replica_axis, out_shardings=jax.tree.map(lambda a: a.sharding,
                                                                   abstract_state))(restored)
    except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many kinds)
      path = os.path.join(self.directory, str(step))
      earlier = [s for s in self._manager.all_steps() if s < step]
      aside = os.path.join(os.path.dirname(self.directory), f'damaged_checkpoint_{step}')
      fallback = (f'To resume from step {max(earlier)} instead, move it aside: '
                  f'mv {path} {aside}' if earlier else
                  'There is no earlier checkpoint; use a new --workdir to start over')
      raise errors.CheckpointError(
          f'Checkpoint {path} cannot be restored ({type(e).__name__}: {str(e)[:500]}). It is damaged, '
          f'or the config describes a different model than the one saved. {fallback}, then re-run '
          'the same command.') from e

  def should_save(self, step: int) -> bool:
    """Whether save(step) would save under the interval policy."""
    return self._manager.should_save(step)

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves the stacked `state` (asynchronously) if the interval policy says so or `force`;
    True if a save started."""
    if not (force or self.should_save(step)):
      return False
    if self.squeeze:
      state = jax.tree.map(lambda x: x[0], state)
    return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def close(self) -> None:
    """Waits for pending saves to commit."""
    self._manager.wait_until_finished()
    self._manager.close()


class BestCheckpointer:
  """`directory/<step>/` (a replica's best_checkpoint in its run's Layout): the one model's state
  with the lowest `metric` seen so far (one kept).

  The metric's value is stored inside the checkpoint (orbax metrics), so the record of the best and
  the state it belongs to are committed together; a resumed run reads it back.
  """

  def __init__(self, directory: str, metric: str = 'fid'):
    self.metric = metric
    self.directory = directory
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            best_fn=lambda m: m[metric], best_mode='min', max_to_keep=1,
            keep_checkpoints_without_metrics=False, create=True, cleanup_tmp_directories=True))

  def best(self) -> tuple[int, float] | None:
    """(step, metric value) of the kept checkpoint, or None before the first."""
    self._manager.wait_until_finished()  # A save in flight has no readable metrics yet.
    step = self._manager.best_step()
    if step is None:
      return None
    return step, float(self._manager.metrics(step)[self.metric])

  def offer(self, step: int, state: Any, value: float) -> bool:
    """Saves `state` as the best if `value` is lower than the kept one's; True if it did."""
    best = self.best()
    if best is not None and not value < best[1]:
      return False
    return self._manager.save(step, args=ocp.args.StandardSave(state),
                              metrics={self.metric: float(value)}, force=True)

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def committed_steps(directory: str) -> list[int]:
  """Steps of the committed checkpoints in a checkpoint directory (half-written ones excluded)."""
  path = epath.Path(directory)
  if run_workdir.is_remote(directory):
    # fsspec keeps each process's listings of a bucket; other processes add checkpoints.
    epath_backend.fsspec_backend.fs(str(directory)).invalidate_cache(str(directory))
  if not path.is_dir():
    return []
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def restore_on_one_device(directory: str, step: int, abstract_state: Any = None) -> Any:
  """The checkpoint `directory/<step>` on this process's first device, whatever number of devices
  wrote it: for evaluation and inference outside the loop. Into the structure of abstract_state
  (e.g. jax.eval_shape of a task's create_state) when given, else as saved (nested dicts)."""
  path = os.path.join(directory, str(step), 'default')
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    tree = (checkpointer.metadata(path).item_metadata.tree if abstract_state is None
            else abstract_state)
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), tree)
    return checkpointer.restore(path, target)
  except Exception as e:  # pylint: disable=broad-except  (orbax/tensorstore raise many kinds)
    raise errors.CheckpointError(
        f'Checkpoint {os.path.dirname(path)} cannot be read ({type(e).__name__}: '
        f'{str(e)[:300]}). It is damaged, or holds a different model than its config.json says.'
    ) from e
  finally:
    checkpointer.close()


def _squeezed_abstract(leaf: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct:
  """A stacked leaf's description without its replica axis (of size 1), replicated on its mesh."""
  sharding = jax.sharding.NamedSharding(leaf.sharding.mesh, jax.sharding.PartitionSpec())
  return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype, sharding=sharding)


def _add_replica_axis(tree: Any) -> Any:
  return jax.tree.map(lambda x: x[None], tree)


def restore_replicas_on_one_device(directory: str, step: int, abstract_one: Any,
                                   num_replicas: int) -> Any:
  """A run's checkpoint `directory/<step>` as the stacked state [R, ...] of its `num_replicas`
  replicas, on this process's first device (a one-replica run's checkpoint holds the state
  without the axis: it comes back with one). abstract_one describes one replica's state."""
  if num_replicas == 1:
    return _add_replica_axis(restore_on_one_device(directory, step, abstract_one))
  stacked = jax.tree.map(lambda a: jax.ShapeDtypeStruct((num_replicas, *a.shape), a.dtype),
                         abstract_one)
  return restore_on_one_device(directory, step, stacked)
