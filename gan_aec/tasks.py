"""The small interface through which the one training loop drives every model family.

A family (autoencoder, VAE, DCGAN, ...) provides `build_task(config) -> Task`; the loop in
`gan_aec.train` only ever calls these five functions. The steps are the family's pure module-level
steps with their hyperparameters bound from the config (functools.partial), so the loop's jitted,
sharded version wraps the same functions a researcher imports.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

State = Any
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]

# config.model -> module whose `build_task(config)` builds it.
REGISTRY = {
    'autoencoder': 'gan_aec.autoencoder.task',
    'denoising_autoencoder': 'gan_aec.autoencoder.task',
    'vae': 'gan_aec.vae.task',
    'dcgan': 'gan_aec.dcgan.task',
    'classifier': 'gan_aec.classifier.task',
}


@dataclasses.dataclass(frozen=True)
class Task:
  """What the loop needs of a model family.

  Attributes:
    create_state: (rng, example_batch) -> the step-0 state pytree; traceable (the loop jits it).
    train_step: (state, batch, rng) -> (state, metrics of scalars); pure, jitted by the loop.
    eval_step: (state, batch, rng) -> sums over the batch's valid examples, with 'count'; the loop
      adds them over the test split and divides by 'count', logging `eval_<name>`.
    write_figures: (state, test_split, figures_dir, step, final) -> paths written; host code, run
      after each evaluation (final=True at the end of training).
    write_samples: optional (state, figures_dir, step) -> paths written, run every
      `config.sample_every_steps` (the GAN's sample grids).
    image_range: the (low, high) float range the steps expect batch['image'] in; the input
      pipeline maps uint8 0..255 onto it.
    sample_images: optional (state, rng, num) -> float32 [num, H, W, C] images in [0, 1], new
      samples of a generative model (scored by the sample metrics; host code).
  """
  create_state: Callable[[jax.Array, Batch], State]
  train_step: Callable[[State, Batch, jax.Array], tuple[State, Metrics]]
  eval_step: Callable[[State, Batch, jax.Array], Metrics]
  write_figures: Callable[..., list[str]]
  write_samples: Callable[..., list[str]] | None = None
  image_range: tuple[float, float] = (0.0, 1.0)
  sample_images: Callable[[State, jax.Array, int], np.ndarray] | None = None


def in_batches(fn: Callable[[np.ndarray], jax.Array], inputs: np.ndarray,
               batch_size: int = 500) -> np.ndarray:
  """fn over inputs in batches of batch_size (the last one padded, so fn compiles once)."""
  outputs = []
  for start in range(0, len(inputs), batch_size):
    chunk = inputs[start:start + batch_size]
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk), *chunk.shape[1:]),
                                             chunk.dtype)])
    outputs.append(np.asarray(fn(padded))[:len(chunk)])
  return np.concatenate(outputs)


def build_task(config: ml_collections.ConfigDict) -> Task:
  if config.model not in REGISTRY:
    raise ValueError(f'Unknown model {config.model!r}; config.model must be one of '
                     f'{sorted(REGISTRY)}.')
  return importlib.import_module(REGISTRY[config.model]).build_task(config)
