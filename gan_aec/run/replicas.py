"""Many seeds (and a hyperparameter sweep) trained as one program: the replicas of a run.

`config.num_seeds = K` trains K independent replicas, replica i being exactly the run with
`seed = config.seed + i` (its initialisation, its data order, its dropout / noise / latent
streams). `config.sweep.<name> = 'v1,v2,...'` adds sweep points: the replicas are the product of
the seeds and the points, sweep-major (replica r = point r // K, seed config.seed + r % K), so the
seeds of one point are neighbours. A swept `learning_rate` lives in the optimizer state
(`optax.inject_hyperparams`); a swept step hyperparameter (the VAE's `beta`, the DCGAN's
`real_label`) is passed to the family's train_step per replica.

Every run is R >= 1 replicas (a one-model run is R = 1): the state carries a leading replica axis,
and the loop vmaps the family's own train_step and eval_step over it (gan_aec.run.sharding).
With several replicas, metrics are reported per replica and as their mean and standard deviation
(`summarize_all`), and each replica's files have their own folder (gan_aec.run.workdir.Layout).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gan_aec.errors import ConfigError
from gan_aec.run import config as config_lib

OPTIMIZER_HYPERPARAMETERS = config_lib.OPTIMIZER_HYPERPARAMETERS


@dataclasses.dataclass(frozen=True)
class Replicas:
  """The replicas of a run.

  Attributes:
    seeds: [R] the config seed of each replica.
    points: [R] each replica's sweep values, {name: float} ({} without a sweep).
    step_names: the swept hyperparameters the train step takes as keyword arguments.
  """
  seeds: tuple[int, ...]
  points: tuple[dict[str, float], ...]
  step_names: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.seeds)

  def labels(self) -> list[dict[str, Any]]:
    """One record per replica: its index, seed and sweep values (the run_start record's)."""
    return [{'replica': r, 'seed': seed, **point}
            for r, (seed, point) in enumerate(zip(self.seeds, self.points))]

  def name(self, r: int) -> str:
    """A folder name for replica r, e.g. 'replica03_seed3_learning_rate0.0002'."""
    point = ''.join(f'_{k}{v:g}' for k, v in self.points[r].items())
    return f'replica{r:02d}_seed{self.seeds[r]}{point}'

  def names(self) -> tuple[str, ...]:
    """Every replica's folder name (`name`)."""
    return tuple(self.name(r) for r in range(len(self)))

  def describe(self, r: int) -> str:
    """' in replica r (seed=..., <sweep values>)' for messages; '' for a one-replica run."""
    if len(self) == 1:
      return ''
    label = ', '.join(f'{k}={v}' for k, v in self.labels()[r].items() if k != 'replica')
    return f' in replica {r} ({label})'

  def image_prefix(self, r: int) -> str:
    """Replica r's prefix of TensorBoard image names ('' for a one-replica run)."""
    return f'{self.name(r)}/' if len(self) > 1 else ''

  def optimizer_hyperparameters(self) -> dict[str, np.ndarray]:
    """{name: float32 [R]} of the swept optimizer hyperparameters (set in the optimizer state)."""
    return {name: np.asarray([p[name] for p in self.points], np.float32)
            for name in OPTIMIZER_HYPERPARAMETERS if name in self.points[0]}

  def step_hyperparameters(self) -> dict[str, np.ndarray]:
    """{name: float32 [R]} of the swept step hyperparameters (vmapped with the state)."""
    return {name: np.asarray([p[name] for p in self.points], np.float32)
            for name in self.step_names}


def from_config(config: ml_collections.ConfigDict,
                step_hyperparameters: Sequence[str] = ()) -> Replicas:
  """The replicas config.num_seeds and config.sweep ask for.

  step_hyperparameters: the names the family's train_step can take per replica (its Task's);
  a swept name that is neither one of them nor an optimizer hyperparameter is a ConfigError.
  """
  num_seeds, sweep = config_lib.seeds_and_sweep(config)
  allowed = set(OPTIMIZER_HYPERPARAMETERS) | set(step_hyperparameters)
  unknown = sorted(set(sweep) - allowed)
  if unknown:
    raise ConfigError(f'config.sweep.{unknown[0]} cannot be swept for {config.model}; sweepable: '
                      f'{", ".join(sorted(allowed))}.')
  names = sorted(sweep)
  grids = [sweep[name] for name in names]
  points = [dict(zip(names, values)) for values in itertools.product(*grids)] or [{}]
  seeds, replica_points = [], []
  for point in points:
    for i in range(num_seeds):
      seeds.append(int(config.seed) + i)
      replica_points.append(point)
  return Replicas(seeds=tuple(seeds), points=tuple(replica_points),
                  step_names=tuple(n for n in names if n in step_hyperparameters))


def set_optimizer_hyperparameter(state: Any, name: str, values: np.ndarray) -> Any:
  """`state` with the optax.inject_hyperparams value `name` set to `values` ([R], one per
  replica) in every optimizer state that holds it (e.g. both of the DCGAN's)."""
  def visit(node):
    if isinstance(node, optax.InjectStatefulHyperparamsState) and name in node.hyperparams:
      current = node.hyperparams[name]
      return node._replace(hyperparams={
          **node.hyperparams, name: jnp.asarray(values, current.dtype).reshape(current.shape)})
    return node
  found = []

  def leaf(node):
    hit = isinstance(node, optax.InjectStatefulHyperparamsState)
    found.append(hit)
    return hit
  new = jax.tree.map(visit, state, is_leaf=leaf)
  if not any(found):
    raise ConfigError(f'Sweeping {name} needs an optimizer built with optax.inject_hyperparams; '
                      'this task builds its optimizer without it.')
  return new


def replica(tree: Any, r: int) -> Any:
  """Replica r's slice of a stacked pytree (arrays with a leading replica axis)."""
  return jax.tree.map(lambda x: x[r], tree)


def summarize_all(values: Sequence[dict[str, float]]) -> dict[str, Any]:
  """What is logged of each replica's {name: value}: a one-replica run's values as they are;
  with several replicas each metric's mean, std and per-replica list (`summarize`)."""
  if len(values) == 1:
    return dict(values[0])
  combined = {}
  for name in values[0]:
    combined.update(summarize(name, [v[name] for v in values]))
  return combined


def summarize(name: str, values: Sequence[float]) -> dict[str, Any]:
  """{name: mean, name_std: standard deviation (ddof 1; 0 for one), name_per_replica: [...]}."""
  values = [float(v) for v in values]
  mean = sum(values) / len(values)
  std = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
         if len(values) > 1 else 0.0)
  return {name: mean, f'{name}_std': std, f'{name}_per_replica': values}
