"""The (denoising) autoencoder's Task: its state, steps and reconstruction figures from a config."""

from __future__ import annotations

import functools
import os

import jax
import ml_collections
import numpy as np
import optax

from gan_aec import autoencoder, figures, microbatching
from gan_aec.autoencoder import (ConvAutoencoder, add_noise, create_train_state, eval_step,
                                 train_step)
from gan_aec.data.splits import Split
from gan_aec.run import config as config_lib
from gan_aec.run.tasks.base import Drawing, Task, optimizer
from gan_aec.run.workdir import ReplicaFiles

NUM_FIGURE_DIGITS = 10
_reconstruct = jax.jit(autoencoder.reconstruct)  # Compiled once for the process's figures.


def build_task(config: ml_collections.ConfigDict) -> Task:
  model = ConvAutoencoder(encoder_features=tuple(config.encoder_features),
                          decoder_features=tuple(config.decoder_features),
                          out_channels=config_lib.channels(config),
                          conv_implementation=config.conv_implementation,
                          kernel_init=config.kernel_init,
                          dtype=config_lib.compute_dtype(config))
  noise_std = float(config.noise_std)

  def create_state(rng, example_batch):
    return create_train_state(model, tx=optimizer(config, optax.adam), rng=rng,
                              example_images=example_batch['image'])

  def write_figures(state, test: Split, files: ReplicaFiles, step: int, final: bool, *,
                    seed: int) -> list[str]:
    figures_dir = files.figures
    del seed  # The figures show test digits.
    clean = test.images[:NUM_FIGURE_DIGITS].astype(np.float32) / 255.0
    inputs = clean
    if noise_std:
      inputs = np.asarray(add_noise(clean, jax.random.key(0), noise_std))
    recon = np.asarray(_reconstruct(state, inputs))
    if noise_std:
      rows, titles, name = [inputs, recon, clean], ['noisy', 'denoised', 'clean'], 'denoising'
    else:
      rows, titles, name = [clean, recon], ['test digits', 'reconstructed'], 'reconstructions'
    paths = [figures.save_image_rows(os.path.join(figures_dir, f'{name}_step{step:06d}.png'),
                                     rows, titles, title=f'{config.model}, step {step}')]
    if final:
      paths.append(figures.save_image_rows(os.path.join(figures_dir, f'{name}.png'), rows, titles,
                                           title=f'{config.model}, step {step}'))
    return paths

  return Task(create_state=create_state,
              train_step=functools.partial(
                  train_step, noise_std=noise_std,
                  microbatch_size=microbatching.resolve_microbatch_size(config.microbatch_size)),
              eval_step=functools.partial(eval_step, noise_std=noise_std),
              drawing=Drawing(write_figures))
