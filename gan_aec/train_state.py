"""The train state every single-network model uses: a pytree the step reads its optimizer from."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
from flax.training import train_state
import optax

__all__ = ['TrainState', 'create', 'init']


class TrainState(train_state.TrainState):
  """Flax's TrainState (step, params, opt_state; apply_fn and tx as static fields) plus BatchNorm.

  `batch_stats` is the `batch_stats` collection of models that have BatchNorm, else an empty dict.
  The optimizer travels in the state (`state.tx`), so a step works with whatever optax
  transformation the state was created with.
  """
  batch_stats: Any = None


def create(*, model: nn.Module, params: Any, tx: optax.GradientTransformation,
           batch_stats: Any | None = None) -> TrainState:
  """A step-0 TrainState for `model` with `params`, optimised by the optax transformation `tx`.

  Args:
    model: the Flax module; the state keeps `model.apply` as `apply_fn`.
    params: its 'params' collection (a pytree of arrays).
    tx: any optax gradient transformation (a schedule inside it is fine); its state is initialised
      here from `params`.
    batch_stats: the 'batch_stats' collection of a model with BatchNorm; None: an empty dict.

  Returns:
    The TrainState at step 0.
  """
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                           batch_stats={} if batch_stats is None else batch_stats)


def init(model: nn.Module, *example_args: Any, tx: optax.GradientTransformation,
         rngs: Any) -> TrainState:
  """A step-0 TrainState with `model`'s variables initialised by `model.init(rngs, *example_args)`.

  Args:
    model: the Flax module.
    *example_args: the arguments of one forward pass of the training shapes (e.g. one image).
    tx: any optax gradient transformation.
    rngs: a PRNG key, or a dict of them by collection (e.g. {'params': key}).

  Returns:
    The TrainState at step 0, with the model's 'batch_stats' when it has BatchNorm.
  """
  variables = model.init(rngs, *example_args)
  return create(model=model, params=variables['params'], tx=tx,
                batch_stats=variables.get('batch_stats'))
