"""The one place that builds the device mesh and puts states, batches and steps on it.

The mesh has two axes, `replica` and `data`. Every run trains R >= 1 replicas
(gan_aec.run.replicas): the state and the training batches carry a leading replica axis, split
over `replica` first (no collective between replicas), and each replica's batch over `data` when
there are more devices than replicas (a one-model run: the whole mesh is `data`). The steps are
the task's own, vmapped over the replica axis and jitted once (`jit_steps`): the functions jitted
are the ones a researcher imports, wrapped, never copied. The training loop, the evaluation and
the benchmark all use these.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Hashable, Sequence

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
  """The task's steps over a leading replica axis, jitted for the mesh (R >= 1 replicas).

  Returns (train_fn, eval_fn). train_fn(states, batches, train_rngs, hyperparameters) runs, for
  every replica r, task.train_step(states[r], batches[r], fold_in(train_rngs[r], states[r].step),
  **{name: values[r] for name, values in hyperparameters.items()}) and donates the old states;
  eval_fn(states, batch, rngs) runs task.eval_step(states[r], batch, rngs[r]) on one batch shared
  by every replica. States, keys, hyperparameters and outputs carry the replica axis [R, ...];
  batches are [R, B, ...] for training and [B, ...] for evaluation.

  Each device group of the mesh's `replica` axis runs its own replicas in a shard_map over that
  axis (no collective between replicas), as jax.vmap of the task's own steps over the local
  replicas; within a replica the batch is split over the `data` axis, which stays automatic (XLA
  partitions each replica's step, e.g. its gradient all-reduce and micro-batching's shard_map,
  gan_aec.microbatching). One replica is the same program with R = 1.
  """
  def train_one(state, batch, rng, hyperparameters):
    return task.train_step(state, batch, jax.random.fold_in(rng, state.step), **hyperparameters)

  def train_fn(states, batches, rngs, hyperparameters):
    return jax.vmap(train_one)(states, batches, rngs, hyperparameters)

  def eval_fn(states, batch, rngs):
    return jax.vmap(lambda s, r: task.eval_step(s, batch, r))(states, rngs)

  local = {'mesh': mesh, 'axis_names': frozenset({'replica'}), 'check_vma': False}
  train_fn = jax.shard_map(train_fn, in_specs=(P('replica'),) * 4,
                           out_specs=(P('replica'), P('replica')), **local)
  eval_fn = jax.shard_map(eval_fn, in_specs=(P('replica'), P(), P('replica')),
                          out_specs=P('replica'), **local)
  stacked, stacked_batch = replica_sharding(mesh), replica_batch_sharding(mesh)
  train_fn = jax.jit(train_fn, in_shardings=(stacked, stacked_batch, stacked, stacked),
                     out_shardings=(stacked, stacked), donate_argnums=0)
  eval_fn = jax.jit(eval_fn, in_shardings=(stacked, batch_sharding(mesh), stacked),
                    out_shardings=stacked)
  return train_fn, eval_fn


def put_global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A host array that every process holds whole -> a global array with `sharding` (each process
  transfers only its own devices' pieces)."""
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def put_replica_batches(get: Callable[[Hashable, slice], dict[str, np.ndarray]],
                        sources: Sequence[Hashable], batch_size: int,
                        example: dict[str, np.ndarray],
                        sharding: NamedSharding) -> dict[str, jax.Array]:
  """A global batch [R, B, ...] of which each process builds only the pieces its own devices
  hold: replica r's `images` (a slice of 0..B) are get(sources[r], images), shaped like
  `example` (one image's batch) beyond their first axis. Replicas with the same source (e.g. the
  seed: the replicas of a sweep) share their pieces, and each piece is built once."""
  pieces = {}

  def piece(key, index):
    replicas, images = index[0], index[1]
    start, stop, _ = images.indices(batch_size)
    rows = []
    for r in range(*replicas.indices(len(sources))):
      if (sources[r], start, stop) not in pieces:
        pieces[(sources[r], start, stop)] = get(sources[r], slice(start, stop))
      rows.append(pieces[(sources[r], start, stop)][key])
    return np.stack(rows)

  return {key: jax.make_array_from_callback((len(sources), batch_size, *value.shape[1:]),
                                            sharding, functools.partial(piece, key))
          for key, value in example.items()}


def put_keys(keys: jax.Array, sharding: NamedSharding) -> jax.Array:
  """PRNG keys that every process computed alike -> a global key array with `sharding`."""
  data = np.asarray(jax.random.key_data(keys))
  return jax.random.wrap_key_data(put_global(data, sharding), impl=jax.random.key_impl(keys))


def gather_to_host(tree: Any) -> Any:
  """Arrays sharded over any axis (e.g. stacked replicas) -> whole numpy arrays on every
  process."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)
