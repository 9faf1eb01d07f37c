"""The small interface through which the one training loop drives every model family.

A family's task module (gan_aec.run.tasks.<family>) provides `build_task(config) -> Task`. The
steps in a Task are the library's pure module-level steps (gan_aec.<family>.train_step) with
their hyperparameters bound from the config (functools.partial), so the loop's jitted, sharded
version wraps the same functions a researcher imports.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax

from gan_aec.data import batching

State = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Drawing:
  """What a model family draws from a state: host code that runs outside the jitted steps, on one
  replica's state (numpy) at a time.

  Attributes:
    write_figures: (state, test_split, files, step, final, *, seed) -> paths written; run after
      each evaluation (final=True at the end of training) for each replica: `files` is its
      gan_aec.run.workdir.ReplicaFiles (figures go to files.figures), `seed` its config seed, for
      figures drawn from fixed noise.
    sample_images: optional (state, rng, num) -> float32 [num, H, W, C] images in [0, 1], new
      samples of a generative model (scored by the sample metrics). None: the family does not
      sample, and a run has no sample metrics.
    write_samples: optional (state, files, step, *, seed) -> paths written, run every
      `sample_every_steps` steps between evaluations (the GAN's sample grids).
    sample_every_steps: how often write_samples runs (None: never).
  """
  write_figures: Callable[..., list[str]]
  sample_images: Callable[[State, jax.Array, int], np.ndarray] | None = None
  write_samples: Callable[..., list[str]] | None = None
  sample_every_steps: int | None = None


@dataclasses.dataclass(frozen=True)
class Task:
  """What the loop needs of a model family: how it trains and evaluates, and what it draws.

  Attributes:
    create_state: (rng, example_batch) -> the step-0 state pytree; traceable (the loop jits it).
    train_step: (state, batch, rng) -> (state, metrics of scalars); pure, jitted by the loop.
    eval_step: (state, batch, rng) -> sums over the batch's valid examples, with 'count'; the loop
      adds them over the test split and divides by 'count', logging `eval_<name>`.
    drawing: its figures and samples (Drawing): host code, never inside a jitted step.
    image_range: the (low, high) float range the steps expect batch['image'] in; the input
      pipeline maps uint8 0..255 onto it.
    step_hyperparameters: keyword arguments of train_step that may differ per replica (float
      hyperparameters a sweep can vary, e.g. the VAE's 'beta'; see gan_aec.run.replicas).
  """
  create_state: Callable[[jax.Array, Batch], State]
  train_step: Callable[[State, Batch, jax.Array], tuple[State, Metrics]]
  eval_step: Callable[[State, Batch, jax.Array], Metrics]
  drawing: Drawing
  image_range: tuple[float, float] = batching.UNIT_RANGE
  step_hyperparameters: tuple[str, ...] = ()


def optimizer(config: ml_collections.ConfigDict,
              factory: Callable[..., optax.GradientTransformation],
              **hyperparameters) -> optax.GradientTransformation:
  """factory(learning_rate=config.learning_rate, **hyperparameters): the family's optimizer.

  When the run sweeps the learning rate (config.sweep.learning_rate), the optimizer is built with
  optax.inject_hyperparams, so that each replica's optimizer state holds its own learning rate
  (gan_aec.run.replicas.set_optimizer_hyperparameter); the update is the same function.
  """
  sweep = config.get('sweep') or {}
  if sweep.get('learning_rate'):
    return optax.inject_hyperparams(factory)(learning_rate=config.learning_rate, **hyperparameters)
  return factory(learning_rate=config.learning_rate, **hyperparameters)
