"""The one place that builds the device mesh and puts states, batches and steps on it.

The mesh has two axes, `replica` and `data`. One model (config.num_seeds = 1): the state is
replicated, each batch split over `data`, and the task's pure steps are jitted with those
shardings. Several replicas (gan_aec.run.replicas): the state and the batches carry a leading
replica axis, split over `replica` first (no collective between replicas), and over `data` within
a replica when there are more devices than replicas; the steps are the task's own, vmapped over
the replica axis. Either way the functions jitted are the ones a researcher imports, wrapped,
never copied. The training loop, the evaluation and the benchmark all use these.
"""

from __future__ import annotations

import math
from typing import Any

import jax
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from gan_aec.run.tasks import Task


def mesh_devices(config: ml_collections.ConfigDict | None = None,
                 num_replicas: int = 1) -> list[jax.Device]:
  """Every device of every process; on CPU with `config.cpu_data_parallel` False and one
  replica, the first device of each process (a model that runs faster as one device using all
  cores, see gan_aec.run.cpu_devices). Several replicas spread over every device."""
  devices = jax.devices()
  if (config is not None and not config.get('cpu_data_parallel', True) and num_replicas == 1
      and jax.default_backend() == 'cpu'):
    devices = [min((d for d in devices if d.process_index == p), key=lambda d: d.id)
               for p in sorted({d.process_index for d in devices})]
  return devices


def make_mesh(config: ml_collections.ConfigDict | None = None,
              num_replicas: int = 1) -> jax.sharding.Mesh:
  """A (`replica`, `data`) mesh over `mesh_devices(config)` (every device of every process).

  The replica axis takes gcd(num_replicas, devices) devices, so that replicas spread over
  devices first; the rest of each replica's devices split its batch (`data`). One replica: the
  whole mesh is `data`.
  """
  devices = mesh_devices(config, num_replicas)
  replica_shards = math.gcd(num_replicas, len(devices))
  auto = jax.sharding.AxisType.Auto
  return jax.make_mesh((replica_shards, len(devices) // replica_shards), ('replica', 'data'),
                       axis_types=(auto, auto), devices=devices)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """A state's sharding: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """A batch's sharding: split along axis 0 over the `data` axis."""
  return NamedSharding(mesh, P('data'))


def replica_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """A stacked state's (or per-replica key's) sharding: axis 0 over the `replica` axis."""
  return NamedSharding(mesh, P('replica'))


def replica_batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """A stacked batch's sharding [R, B, ...]: replicas over `replica`, images over `data`."""
  return NamedSharding(mesh, P('replica', 'data'))


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


def jit_replica_steps(task: Task, mesh: jax.sharding.Mesh):
  """The task's steps vmapped over a leading replica axis and jitted for the mesh.

  Returns (train_fn, eval_fn). train_fn(states, batches, train_rngs, hyperparameters) runs, for
  every replica r, task.train_step(states[r], batches[r], fold_in(train_rngs[r], step),
  **{name: values[r]}) and donates the old states; eval_fn(states, batch, rngs) runs
  task.eval_step(states[r], batch, rngs[r]) on the same batch for every replica. Returns are
  stacked the same way. With one device per replica group (`data` of size 1) each device runs
  its own replicas in a shard_map with no collective at all; otherwise XLA partitions the vmapped
  step over both axes (`spmd_axis_name`).
  """
  def train_one(state, batch, rng, hyperparameters):
    return task.train_step(state, batch, jax.random.fold_in(rng, state.step), **hyperparameters)

  local = mesh.shape['data'] == 1
  vmap = (jax.vmap if local else
          lambda f, **kw: jax.vmap(f, spmd_axis_name='replica', **kw))

  def train_fn(states, batches, rngs, hyperparameters):
    return vmap(train_one)(states, batches, rngs, hyperparameters)

  def eval_fn(states, batch, rngs):
    return vmap(lambda s, r: task.eval_step(s, batch, r))(states, rngs)

  stacked, stacked_batch = replica_sharding(mesh), replica_batch_sharding(mesh)
  if local:  # Each device: its replicas, whole batches; micro-batching slices them locally.
    train_fn = jax.shard_map(train_fn, mesh=mesh, in_specs=(P('replica'),) * 4,
                             out_specs=(P('replica'), P('replica')), check_vma=False)
    eval_fn = jax.shard_map(eval_fn, mesh=mesh, in_specs=(P('replica'), P(), P('replica')),
                            out_specs=P('replica'), check_vma=False)
  else:
    train_fn, eval_fn = _with_abstract_mesh(train_fn, mesh), _with_abstract_mesh(eval_fn, mesh)
  train_fn = jax.jit(train_fn, in_shardings=(stacked, stacked_batch, stacked, stacked),
                     out_shardings=(stacked, stacked), donate_argnums=0)
  eval_fn = jax.jit(eval_fn, in_shardings=(stacked, batch_sharding(mesh), stacked),
                    out_shardings=stacked)
  return train_fn, eval_fn


def _with_abstract_mesh(fn, mesh):
  def wrapped(*args):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args)
  return wrapped


def put_global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A host array that every process holds whole -> a global array with `sharding` (each process
  transfers only its own devices' pieces)."""
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def put_keys(keys: jax.Array, sharding: NamedSharding) -> jax.Array:
  """PRNG keys that every process computed alike -> a global key array with `sharding`."""
  data = np.asarray(jax.random.key_data(keys))
  return jax.random.wrap_key_data(put_global(data, sharding), impl=jax.random.key_impl(keys))


def to_host(tree: Any) -> Any:
  """Replicated arrays -> numpy on this process. Every process holds a full copy of a replicated
  array, but in a multi-process run not all of its shards are addressable here, so
  jax.device_get would fail; one local copy is the value."""
  return jax.tree.map(
      lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, tree)


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """This process's slice of a global batch -> global arrays with `sharding`."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def gather_to_host(tree: Any) -> Any:
  """Arrays sharded over any axis (e.g. stacked replicas) -> whole numpy arrays on every
  process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)
