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
  """Saves every `every_steps` steps (and when forced), keeps the newest `max_to_keep`."""

  def __init__(self, workdir: str, every_steps: int, max_to_keep: int = MAX_TO_KEEP):
    self.directory = os.path.join(run_workdir.absolute(workdir), 'checkpoints')
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(every_steps),
            preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep),
            create=True, cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, abstract_state: Any, step: int | None = None) -> Any:
    """Restores `step` (default: latest) into the structure, dtypes and shardings of abstract_state."""
    step = self.latest_step() if step is None else step
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
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
    """Saves (asynchronously) if the interval policy says so or `force`; True if a save started."""
    return self._manager.save(step, args=ocp.args.StandardSave(state), force=force)

  def close(self) -> None:
    """Waits for pending saves to commit."""
    self._manager.wait_until_finished()
    self._manager.close()


class BestCheckpointer:
  """`WORKDIR/best_checkpoint/<step>/`: the state with the lowest `metric` seen so far (one kept);
  `WORKDIR/best_checkpoint/<subdirectory>/<step>/` for each replica of a many-seed run.

  The metric's value is stored inside the checkpoint (orbax metrics), so the record of the best and
  the state it belongs to are committed together; a resumed run reads it back.
  """

  def __init__(self, workdir: str, metric: str = 'fid', subdirectory: str | None = None):
    self.metric = metric
    self.directory = os.path.join(run_workdir.absolute(workdir), 'best_checkpoint',
                                  subdirectory or '')
    self.directory = self.directory.rstrip(os.sep)
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
  if '://' in str(directory):
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


def abstract_like(state: Any) -> Any:
  """ShapeDtypeStructs (with shardings) describing `state`, the target a restore fills."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
