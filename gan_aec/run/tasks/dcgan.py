"""The DCGAN's Task: its two-network state, step, samples and sample grids from a config."""

from __future__ import annotations

import functools
import io
import os

from absl import logging
import jax
from etils import epath
import ml_collections
import numpy as np
import optax

from gan_aec import dcgan, figures
from gan_aec.data import batching
from gan_aec.data.splits import Split
from gan_aec.run import config as config_lib
from gan_aec.run.tasks.base import Drawing, Task, optimizer
from gan_aec.run.workdir import ReplicaFiles

NUM_SAMPLES = 64  # The fixed noise batch: an 8x8 grid.
STRIP_SAMPLES = 8  # Samples of the fixed noise shown at successive steps in the progress strip.
_NOISE_STREAM = 3


def fixed_noise(files: ReplicaFiles, seed: int, latent_dim: int) -> np.ndarray:
  """The run's (a replica's) sample noise [64, latent_dim], created once and kept in
  files.sample_noise, so that grids from any step (and after any resume) show the same latents."""
  path = epath.Path(files.sample_noise)
  if path.exists():
    with path.open('rb') as f:
      return np.load(f)
  z = np.asarray(dcgan.sample_latents(jax.random.fold_in(jax.random.key(seed), _NOISE_STREAM),
                                      NUM_SAMPLES, latent_dim))
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open('wb') as f:
    np.save(f, z)
  return z


def _update_progress(files: ReplicaFiles, step: int,
                     samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Appends step's first samples to files.sample_progress (replacing any entries from this step
  on, as after a resume); returns (steps [N], samples [N, STRIP_SAMPLES, H, W, C])."""
  path = epath.Path(files.sample_progress)
  kept_steps = np.zeros((0,), np.int64)
  kept = np.zeros((0, *samples[:STRIP_SAMPLES].shape), np.float32)
  if path.exists():
    with np.load(io.BytesIO(path.read_bytes())) as old:
      keep = old['steps'] < step
      kept_steps, kept = old['steps'][keep], old['samples'][keep]
  all_steps = np.concatenate([kept_steps, [step]])
  all_samples = np.concatenate([kept, samples[None, :STRIP_SAMPLES]])
  buffer = io.BytesIO()
  np.savez(buffer, steps=all_steps, samples=all_samples)
  path.write_bytes(buffer.getvalue())
  return all_steps, all_samples


REPORT_REAL_LABEL = 0.9  # The original report's one-sided label smoothing (non-saturating loss).


def resolve_defaults(config: ml_collections.ConfigDict) -> None:
  """real_label None -> the report's 0.9 for the non-saturating loss, 1.0 (the standard form)
  for hinge and least squares."""
  if config.get('real_label', 0.0) is None:
    config.real_label = REPORT_REAL_LABEL if config.loss == 'non_saturating' else 1.0
    logging.info('config.real_label (None): %s for the %s loss%s.', config.real_label,
                 config.loss, " (the report's one-sided label smoothing)"
                 if config.loss == 'non_saturating' else ' (its standard form)')


def build_task(config: ml_collections.ConfigDict) -> Task:
  if config.loss not in dcgan.LOSSES:
    raise ValueError(f'loss={config.loss!r} is not a GAN loss here; choose one of '
                     f'{sorted(dcgan.LOSSES)}.')
  dtype = config_lib.compute_dtype(config)
  image_size = config_lib.image_size(config)
  generator = dcgan.Generator(image_size=image_size, channels=config_lib.channels(config),
                              conv_implementation=config.conv_implementation, dtype=dtype)
  discriminator = dcgan.Discriminator(image_size=image_size,
                                      conv_implementation=config.conv_implementation, dtype=dtype)
  use_ema = config.ema_decay is not None

  def create_state(rng, example_batch):
    return dcgan.create_gan_state(
        generator, discriminator, tx=optimizer(config, optax.adam, b1=config.adam_beta1),
        rng=rng, example_images=example_batch['image'], latent_dim=config.latent_dim,
        use_ema=use_ema)

  train_step = functools.partial(dcgan.train_step, latent_dim=config.latent_dim, loss=config.loss,
                                 real_label=config.real_label, ema_decay=config.ema_decay)
  sample_fn = jax.jit(functools.partial(dcgan.generate, use_ema=use_ema))

  def write_samples(state, files: ReplicaFiles, step: int, *, seed: int) -> list[str]:
    figures_dir = files.figures
    z = fixed_noise(files, seed, config.latent_dim)
    samples = (np.asarray(sample_fn(state, z)) + 1.0) / 2.0  # [-1, 1] -> [0, 1] for display.
    which = ' (EMA generator)' if use_ema else ''
    paths = [figures.save_image_grid(os.path.join(figures_dir, f'samples_step{step:06d}.png'),
                                     samples, 8, f'DCGAN samples{which}, step {step}')]
    paths.append(figures.save_image_grid(os.path.join(figures_dir, 'samples.png'), samples, 8,
                                         f'DCGAN samples{which}, step {step}'))
    strip_steps, strip = _update_progress(files, step, samples)
    paths.append(figures.save_image_rows(
        os.path.join(figures_dir, 'progress_strip.png'), list(strip),
        [f'step {s}' for s in strip_steps], title='The same noise at successive steps'))
    return paths

  def write_figures(state, test: Split, files: ReplicaFiles, step: int, final: bool, *,
                    seed: int) -> list[str]:
    del test, final
    return write_samples(state, files, step, seed=seed)

  def sample_images(state, rng, num: int) -> np.ndarray:
    z = np.asarray(dcgan.sample_latents(rng, num, config.latent_dim))
    return (batching.map_in_batches(lambda zs: sample_fn(state, zs), z) + 1.0) / 2.0

  return Task(create_state=create_state, train_step=train_step, eval_step=dcgan.eval_step,
              drawing=Drawing(write_figures, sample_images=sample_images,
                              write_samples=write_samples,
                              sample_every_steps=config.sample_every_steps),
              image_range=batching.TANH_RANGE,
              step_hyperparameters=('real_label',))
