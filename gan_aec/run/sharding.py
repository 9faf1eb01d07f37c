"""The one place that builds the device mesh and puts states, batches and steps on it.

Data parallelism: the state is replicated, each batch is split over the mesh's `data` axis, and
the task's pure steps are jitted with those shardings (the same functions a researcher imports,
wrapped, never copied). The training loop, the evaluation and the benchmark all use these.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from gan_aec.run.tasks import Task


def mesh_devices(config: ml_collections.ConfigDict | None = None) -> list[jax.Device]:
  """Every device of every process; on CPU with `config.cpu_data_parallel` False, the first
  device of each process (a model that runs faster as one device using all cores, see
  gan_aec.run.cpu_devices)."""
  devices = jax.devices()
  if (config is not None and not config.get('cpu_data_parallel', True)
      and jax.default_backend() == 'cpu'):
    devices = [min((d for d in devices if d.process_index == p), key=lambda d: d.id)
               for p in sorted({d.process_index for d in devices})]
  return devices


def make_mesh(config: ml_collections.ConfigDict | None = None) -> jax.sharding.Mesh:
  """One `data` axis over `mesh_devices(config)` (every device of every process by default)."""
  devices = mesh_devices(config)
  return jax.make_mesh((len(devices),), ('data',), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """A state's sharding: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """A batch's sharding: split along axis 0 over the `data` axis."""
  return NamedSharding(mesh, P('data'))


def jit_steps(task: Task, mesh: jax.sharding.Mesh):
  """The task's steps jitted for the mesh: state replicated, batch sharded over `data`.

  Returns (train_fn, eval_fn). train_fn(state, batch, train_rng) runs
  task.train_step(state, batch, fold_in(train_rng, state.step)) and donates the old state;
  eval_fn(state, batch, rng) is task.eval_step.
  """
  # The steps see the mesh (jax.sharding.get_abstract_mesh()): micro-batching splits each
  # device's shard of the batch, not the global batch (gan_aec.microbatching).
  def train_fn(state, batch, rng):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return task.train_step(state, batch, jax.random.fold_in(rng, state.step))

  def eval_fn(state, batch, rng):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return task.eval_step(state, batch, rng)

  state_sharding, data_sharding = replicated(mesh), batch_sharding(mesh)
  train_fn = jax.jit(train_fn, in_shardings=(state_sharding, data_sharding, state_sharding),
                     out_shardings=(state_sharding, state_sharding), donate_argnums=0)
  eval_fn = jax.jit(eval_fn, in_shardings=(state_sharding, data_sharding, state_sharding),
                    out_shardings=state_sharding)
  return train_fn, eval_fn


def to_host(tree: Any) -> Any:
  """Replicated arrays -> numpy on this process. Every process holds a full copy of a replicated
  array, but in a multi-process run not all of its shards are addressable here, so
  jax.device_get would fail; one local copy is the value."""
  return jax.tree.map(
      lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """This process's slice of a global batch -> global arrays with `sharding`."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
