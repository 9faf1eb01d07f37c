"""gan_aec: image autoencoders, VAEs and GANs on MNIST and CelebA in JAX/Flax.

The public API, for use from your own code (no config, no data pipeline, no training loop needed):

  gan_aec.autoencoder     ConvAutoencoder, reconstruction_loss, psnr, add_noise,
                          create_train_state, train_step, eval_step, encode, reconstruct
  gan_aec.vae             ConvVAE, reparameterize, negative_elbo, bernoulli_nll, gaussian_kl,
                          iwae_log_weights, iwae_nll, binarize, create_train_state, train_step,
                          eval_step, importance_weighted_nll, encode, decode, sample
  gan_aec.dcgan           Generator, Discriminator, non_saturating, hinge, least_squares, LOSSES,
                          GANState, create_gan_state, train_step, eval_step, sample_latents,
                          generate
  gan_aec.classifier      Classifier, cross_entropy, random_shift, create_train_state, train_step,
                          eval_step, features
  gan_aec.layers          Conv, ConvTranspose (drop-ins for flax.linen's, fast on XLA:CPU),
                          max_pool_2x2, nearest_resize
  gan_aec.sample_metrics  fid, kid, precision_recall, density_coverage, class_statistics, ...
  gan_aec.train_state     TrainState (the single-network state), create, init
  gan_aec.figures         save_image_grid, save_image_rows (PNG figures)

Every step is a pure function `train_step(state, batch, rng, **hyperparameters) ->
(state, metrics)` that reads the model and the optimizer from the state: `jax.jit`, `jax.vmap` or
shard it yourself. Each module's `__all__` is its public surface.

The package in layers, each importing only the ones above it:
  the library     the families above, layers, microbatching, train_state, sample_metrics,
                  figures, errors: what a researcher imports (JAX, Flax, optax, numpy only)
  gan_aec.data    datasets by name, splits, batching, MNIST (+ the bundled digits), CelebA,
                  offline imports: uint8 arrays on the host (numpy, TFDS)
  gan_aec.run     the application that trains: the loop, sharding, checkpoints, the workdir,
                  metric logging, preemption, CPU devices, sample scoring, and each family's
                  Task (config -> steps + figures)
  entry points    gan_aec.main, gan_aec.evaluate, gan_aec.prepare_data, gan_aec.benchmark
Submodules are imported on first use, so `import gan_aec` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = '0.1.0'

__all__ = ['__version__', 'autoencoder', 'classifier', 'dcgan', 'figures', 'layers',
           'sample_metrics', 'train_state', 'vae']

_SUBMODULES = frozenset(__all__) - {'__version__'}

if TYPE_CHECKING:  # For type checkers and IDEs; at run time the names load lazily.
  from gan_aec import (autoencoder, classifier, dcgan, figures, layers, sample_metrics,
                       train_state, vae)


def __getattr__(name: str) -> Any:
  if name in _SUBMODULES:
    return importlib.import_module(f'gan_aec.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
