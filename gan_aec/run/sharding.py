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

import dataclasses
import functools
import math
from typing import Any, Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
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


def replicas_per_call(mesh: jax.sharding.Mesh, num_replicas: int) -> int:
  """How many of each device group's replicas one call of a jitted step trains.

  On CPU, one: a device holding several replicas trains them one call after another, each call
  the one-model program. Under jax.vmap their convolutions would become grouped convolutions,
  which XLA:CPU runs 10-30x slower than one by one (gan_aec.layers._conv.per_replica avoids
  those, but cutting each replica out of the stacked activations and stacking them back then
  costs more than the replicas save: docs/performance.md). Elsewhere (GPU, TPU) all of them at
  once, vmapped: batched convolutions are what those compilers do well.
  """
  local = max(1, num_replicas // mesh.shape['replica'])
  return 1 if jax.default_backend() == 'cpu' else local


@dataclasses.dataclass(frozen=True)
class ReplicaGroups:
  """How the loop holds R replicas: in groups, one per call of the jitted steps.

  Each device group of the mesh's `replica` axis holds L = R / D of the replicas (replicas
  d * L .. d * L + L - 1 on device group d, as P('replica') splits a stacked array). Call g of a
  step trains local replicas g * n .. g * n + n - 1 of every device group (n = replicas_per_call):
  its state, keys, hyperparameters and batches are arrays of their own, [D * n, ...], so that
  no call slices or copies another's. `split` turns a stacked array [R, ...] (what is created,
  checkpointed and gathered) into the groups, `join` back; `members` says which replicas a group
  holds. With one call per step (every replica at once) a group is the stacked array itself.
  """
  mesh: jax.sharding.Mesh
  num_replicas: int
  per_call: int

  @property
  def calls(self) -> int:
    """Calls per step: each device group's replicas over replicas per call."""
    return max(1, self.num_replicas // self.mesh.shape['replica']) // self.per_call

  def members(self, g: int) -> list[int]:
    """The replicas of group g, in the order of its arrays' first axis."""
    local = self.calls * self.per_call
    return [d * local + g * self.per_call + j for d in range(self.mesh.shape['replica'])
            for j in range(self.per_call)] if self.calls > 1 else list(range(self.num_replicas))

  def _on_each_device_group(self, fn: Callable) -> Callable:
    return jax.jit(jax.shard_map(fn, mesh=self.mesh, in_specs=P('replica'),
                                 out_specs=P('replica'), axis_names=frozenset({'replica'}),
                                 check_vma=False))

  @functools.cached_property
  def _split(self) -> Callable:  # Jitted once per ReplicaGroups (a new jit would recompile).
    n = self.per_call
    return self._on_each_device_group(
        lambda tree: tuple(jax.tree.map(lambda x, g=g: x[g * n:(g + 1) * n], tree)
                           for g in range(self.calls)))

  @functools.cached_property
  def _join(self) -> Callable:
    return self._on_each_device_group(
        lambda parts: jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts))

  def split(self, stacked: Any) -> tuple[Any, ...]:
    """A stacked pytree [R, ...] over `replica` -> one per group, each [D * n, ...]."""
    return (stacked,) if self.calls == 1 else self._split(stacked)

  def join(self, groups: Sequence[Any]) -> Any:
    """One pytree per group -> the stacked pytree [R, ...] in replica order."""
    return groups[0] if self.calls == 1 else self._join(tuple(groups))


class ReplicaStep:
  """A jitted step over the replicas, called once per group of them (ReplicaGroups).

  `fn(state, *args, after)` runs the step on one group: its state and its arguments, except
  those at positions `shared` (e.g. an evaluation batch every replica scores), which every
  call takes whole. Calling a ReplicaStep with the groups of the state and of each argument
  runs every call in turn and returns all replicas' outputs in replica order, [R, ...], as one
  call of the stacked step would; a train step also returns the new state groups (each call
  donates its group's old state). The calls run one after another on each device: `after` is
  the previous call's token, so a device starts a call when it finished the one before. Left
  free, XLA:CPU runs independent calls side by side on the same cores, and they slow each other
  down (VAE, 8 replicas on 2 CPU devices: 500 -> 543 images/s).
  """

  def __init__(self, fn: Callable, groups: ReplicaGroups, token: jax.Array,
               shared: tuple[int, ...] = (), updates_state: bool = True):
    self.fn, self.groups, self.shared, self.updates_state = fn, groups, shared, updates_state
    self._token = token

  def _call_args(self, g: int, args: tuple[Any, ...]) -> list[Any]:
    return [a if i in self.shared else a[g] for i, a in enumerate(args)]

  def __call__(self, states: Sequence[Any], *args: Any) -> Any:
    new_states, outputs = [], []
    for g, state in enumerate(states):
      out, self._token = self.fn(state, *self._call_args(g, args), self._token)
      if self.updates_state:
        state, out = out
      new_states.append(state)
      outputs.append(out)
    merged = self.groups.join(outputs)
    return (tuple(new_states), merged) if self.updates_state else merged

  def lower(self, states: Sequence[Any], *args: Any) -> Any:
    """The jitted call lowered for these arguments (jax.stages.Lowered: cost_analysis, ...)."""
    return self.fn.lower(states[0], *self._call_args(0, args), self._token)

  def compile(self, states: Sequence[Any], *args: Any) -> 'ReplicaStep':
    """The same step with its call compiled now for these arguments' shapes and shardings."""
    return ReplicaStep(self.lower(states, *args).compile(), self.groups, self._token,
                       self.shared, self.updates_state)

  def as_text(self) -> str:
    """The compiled program's HLO (after `compile`)."""
    return self.fn.as_text()


def jit_steps(task: Task, mesh: jax.sharding.Mesh,
              num_replicas: int = 1) -> tuple[ReplicaStep, ReplicaStep]:
  """The task's steps over the replicas of a run of num_replicas (R >= 1), jitted for the mesh.

  Returns (train_fn, eval_fn), called on groups of the replicas (train_fn.groups: `split` of
  each stacked [R, ...] state, key and hyperparameter array; batches built for each group's
  `members`). train_fn(states, batches, train_rngs, hyperparameters) runs, for every replica r,
  task.train_step(state_r, batch_r, fold_in(train_rng_r, state_r.step), **hyperparameters_r)
  and donates the old states; eval_fn(states, batch, rngs) runs task.eval_step(state_r, batch,
  rng_r) on one batch [B, ...] shared by every replica. Outputs are [R, ...] in replica order.

  Each device group of the mesh's `replica` axis runs its own replicas in a shard_map over that
  axis (no collective between replicas), as jax.vmap of the task's own steps over
  `replicas_per_call` of its replicas per call (ReplicaStep); within a replica the batch is split
  over the `data` axis, which stays automatic (XLA partitions each replica's step, e.g. its
  gradient all-reduce and micro-batching's shard_map, gan_aec.microbatching). One replica is the
  same program with R = 1.
  """
  groups = ReplicaGroups(mesh, num_replicas, replicas_per_call(mesh, num_replicas))

  def train_one(state, batch, rng, hyperparameters):
    return task.train_step(state, batch, jax.random.fold_in(rng, state.step), **hyperparameters)

  def train_fn(states, batches, rngs, hyperparameters, after):
    return jax.vmap(train_one)(states, batches, rngs, hyperparameters), after

  def eval_fn(states, batch, rngs, after):
    return jax.vmap(lambda s, r: task.eval_step(s, batch, r))(states, rngs), after

  manual = {'mesh': mesh, 'axis_names': frozenset({'replica'}), 'check_vma': False}
  train_fn = jax.shard_map(train_fn, in_specs=(P('replica'),) * 4 + (P(),),
                           out_specs=((P('replica'), P('replica')), P()), **manual)
  eval_fn = jax.shard_map(eval_fn, in_specs=(P('replica'), P(), P('replica'), P()),
                          out_specs=(P('replica'), P()), **manual)
  stacked, whole = replica_sharding(mesh), replicated(mesh)
  train_fn = jax.jit(train_fn, in_shardings=(stacked, replica_batch_sharding(mesh), stacked,
                                             stacked, whole),
                     out_shardings=((stacked, stacked), whole), donate_argnums=0)
  eval_fn = jax.jit(eval_fn, in_shardings=(stacked, batch_sharding(mesh), stacked, whole),
                    out_shardings=(stacked, whole))
  token = put_global(np.zeros((), np.int32), whole)
  return (ReplicaStep(train_fn, groups, token),
          ReplicaStep(eval_fn, groups, token, shared=(0,), updates_state=False))


def put_global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A host array that every process holds whole -> a global array with `sharding` (each process
  transfers only its own devices' pieces)."""
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def put_replica_batches(get: Callable[[Hashable, slice], dict[str, np.ndarray]],
                        sources: Sequence[Hashable], batch_size: int,
                        example: dict[str, np.ndarray], sharding: NamedSharding,
                        pieces: dict | None = None) -> dict[str, jax.Array]:
  """A global batch [R, B, ...] of which each process builds only the pieces its own devices
  hold: replica r's `images` (a slice of 0..B) are get(sources[r], images), shaped like
  `example` (one image's batch) beyond their first axis. Replicas with the same source (e.g. the
  seed: the replicas of a sweep) share their pieces, and each piece is built once (also across
  calls that pass the same `pieces` dict)."""
  pieces = {} if pieces is None else pieces

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
