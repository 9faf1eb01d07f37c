"""The VAE's Task: its state, steps, samples and latent-space figures from a config."""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from jax.scipy.stats import norm
import ml_collections
import numpy as np
import optax

from gan_aec import figures, vae
from gan_aec.data.batching import map_in_batches, to_float
from gan_aec.data.splits import Split
from gan_aec.run import config as config_lib
from gan_aec.run.tasks.base import Drawing, Task, optimizer
from gan_aec.run.workdir import ReplicaFiles
from gan_aec.vae import ConvVAE, create_train_state, eval_step, train_step

MANIFOLD_SIZE = 20  # The original report's 20x20 grid over norm.ppf(linspace(0.05, 0.95, 20)).


# Jitted once for the process: every evaluation's figures reuse the compiled functions.
_latent_means_of = jax.jit(lambda state, images: vae.encode(state, images)[0])
_decode = jax.jit(vae.decode)


def _latent_means(state, images_uint8: np.ndarray) -> np.ndarray:
  return map_in_batches(lambda x: _latent_means_of(state, to_float(x)), images_uint8)


def _project_2d(means: np.ndarray) -> tuple[np.ndarray, str, str, str]:
  """2-D view of latent means: themselves for latent_dim 2, else their first two principal axes."""
  if means.shape[1] == 2:
    return means, 'z[0]', 'z[1]', 'latent means'
  centered = means - means.mean(axis=0)
  _, _, vt = np.linalg.svd(centered, full_matrices=False)
  return (centered @ vt[:2].T, 'principal axis 1', 'principal axis 2',
          f'PCA projection of the {means.shape[1]}-d latent means')


def write_vae_figures(state, latent_dim: int, test: Split, figures_dir: str, step: int,
                      title: str) -> list[str]:
  """Latent scatter, 20x20 manifold, prior samples, reconstructions, interpolations (PNG) of a
  VAE's TrainState."""
  def decode(z):
    return np.asarray(_decode(state, z))
  path = functools.partial(os.path.join, figures_dir)
  paths = []
  means = _latent_means(state, test.images)
  points, xlabel, ylabel, what = _project_2d(means)
  paths.append(figures.save_scatter(path('latent_scatter.png'), points, test.labels,
                                    f'{title}: {what} of {len(means)} test images', xlabel, ylabel))

  # Manifold: z over the prior's quantiles in the first two latent dimensions (others at 0).
  grid = np.asarray(norm.ppf(jnp.linspace(0.05, 0.95, MANIFOLD_SIZE)))
  z = np.zeros((MANIFOLD_SIZE ** 2, latent_dim), np.float32)
  z[:, 0] = np.tile(grid, MANIFOLD_SIZE)
  z[:, 1] = np.repeat(grid[::-1], MANIFOLD_SIZE)  # z[1] grows upwards.
  extra = '' if latent_dim == 2 else ' (other latents 0)'
  paths.append(figures.save_image_grid(
      path('manifold.png'), decode(z), MANIFOLD_SIZE,
      f'{title}: decoded z over norm.ppf(linspace(.05, .95, 20)){extra}',
      xlabel='z[0] ->', ylabel='z[1] ->'))

  prior = jax.random.normal(jax.random.key(0), (100, latent_dim))
  samples = decode(prior)
  paths.append(figures.save_image_grid(path('samples.png'), samples, 10,
                                       f'{title}: samples from the prior'))
  paths.append(figures.save_image_grid(path(f'samples_step{step:06d}.png'), samples, 10,
                                       f'{title}: samples from the prior'))

  digits = to_float(test.images[:10])
  paths.append(figures.save_image_rows(path('reconstructions.png'),
                                       [digits, decode(means[:10])],
                                       ['test images', 'decoded means'], title=title))

  # Interpolations: 5 pairs of test images (fewer in a tiny split), 10 steps along the line between
  # their latent means.
  alphas = np.linspace(0.0, 1.0, 10, dtype=np.float32)[:, None]
  rows = [means[2 * i] * (1 - alphas) + means[2 * i + 1] * alphas
          for i in range(min(5, len(means) // 2))]
  paths.append(figures.save_image_grid(
      path('interpolation.png'), decode(np.concatenate(rows)), 10,
      f'{title}: interpolation between test images in latent space'))
  return paths


def build_task(config: ml_collections.ConfigDict) -> Task:
  model = ConvVAE(latent_dim=config.latent_dim, image_shape=(28, 28, config_lib.channels(config)),
                  conv_implementation=config.conv_implementation,
                  kernel_init=config.get('kernel_init', 'lecun_normal'),
                  dtype=config_lib.compute_dtype(config))

  def create_state(rng, example_batch):
    tx = optimizer(config, optax.rmsprop, decay=config.rmsprop_decay,
                   bias_correction=config.get('rmsprop_bias_correction', False))
    return create_train_state(model, tx=tx, rng=rng, example_images=example_batch['image'])

  def write_figures(state, test: Split, files: ReplicaFiles, step: int, final: bool, *,
                    seed: int) -> list[str]:
    figures_dir = files.figures
    del final, seed  # The figures always show the latest state, from fixed latents.
    return write_vae_figures(state, config.latent_dim, test, figures_dir, step,
                             f'VAE (latent {config.latent_dim}), step {step}')

  def sample_images(state, rng, num: int) -> np.ndarray:
    """Decoder means (Bernoulli probabilities in [0, 1]) of z ~ N(0, I)."""
    z = np.asarray(jax.random.normal(rng, (num, model.latent_dim)))
    return map_in_batches(lambda zs: _decode(state, zs), z)

  binarized = config.dataset.dynamic_binarization
  return Task(
      create_state=create_state,
      train_step=functools.partial(train_step, beta=config.beta, weighting=config.loss_weighting,
                                   dynamic_binarization=binarized),
      eval_step=functools.partial(eval_step,
                                  num_importance_samples=config.eval.num_importance_samples,
                                  dynamic_binarization=binarized),
      drawing=Drawing(write_figures, sample_images=sample_images),
      step_hyperparameters=('beta',))
