"""Pure train and eval steps of the convolutional VAE, its state constructor and its samplers.

Both steps are module-level functions of explicit arguments; the model and optimizer come from the
state (`state.apply_fn`, `state.tx`). The reparameterisation (and the dynamic binarisation, when on)
draws from the step's `rng`. The model need not be a ConvVAE: train_step needs only a Flax module
called as `model.apply({'params': p}, images, rng) -> (logits, mean, logvar)`; eval_step, encode,
decode and sample also call its `encode` and `decode` methods.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gan_aec import train_state
from gan_aec.train_state import TrainState
from gan_aec.vae import losses

# The original report's loss: mean BCE over pixels + 5e-4 * mean KL over latents (a heavily
# down-weighted KL).
SEED_KL_WEIGHT = 5e-4


def create_train_state(model: nn.Module, *, tx: optax.GradientTransformation, rng: jax.Array,
                       example_images: jax.Array) -> TrainState:
  """The step-0 state of a VAE: `model`'s parameters initialised from `rng`.

  Args:
    model: a ConvVAE, or any Flax module called as `model(images, rng) -> (logits, mean, logvar)`.
    tx: the optax optimizer (any transformation; the steps read it from the state).
    rng: PRNG key for the parameters.
    example_images: [B, H, W, C] float32 images of the training shape (only the first is used).

  Returns:
    TrainState with params, optimizer state, step 0 and an empty `batch_stats`.
  """
  # The sampling key of the init call only draws the forward pass's z; it does not touch params.
  return train_state.init(model, example_images[:1], jax.random.key(0), tx=tx,
                          rngs={'params': rng})


def binarize(images: jax.Array, rng: jax.Array) -> jax.Array:
  """Dynamic binarisation: each pixel is 1 with probability equal to its grey level.

  Args:
    images: [B, H, W, C] float in [0, 1].
    rng: PRNG key.

  Returns:
    [B, H, W, C] of 0.0 and 1.0, same dtype.
  """
  return jax.random.bernoulli(rng, images).astype(images.dtype)


def training_loss(parts: dict[str, jax.Array], *, beta: float, weighting: str,
                  num_pixels: int, latent_dim: int) -> jax.Array:
  """The scalar the optimizer minimises, from negative_elbo's per-image parts ([B] each).

  weighting='elbo': mean over images of recon + beta * kl (nats per image; beta=1 is the ELBO).
  weighting='seed': the original report's mean BCE per pixel + 5e-4 * mean KL per latent.
  """
  if weighting == 'elbo':
    return jnp.mean(parts['recon'] + beta * parts['kl'])
  if weighting == 'seed':
    return jnp.mean(parts['recon'] / num_pixels + SEED_KL_WEIGHT * parts['kl'] / latent_dim)
  raise ValueError(f"weighting must be 'elbo' or 'seed', got {weighting!r}.")


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
               beta: float = 1.0, weighting: str = 'elbo',
               dynamic_binarization: bool = False) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on the (beta-weighted) negative ELBO.

  Args:
    state: TrainState of a ConvVAE (or of any model with its call signature; see the module
      docstring), with any optax optimizer.
    batch: {'image': [B, H, W, C] float32 in [0, 1]}, any B; other keys are ignored.
    rng: PRNG key for the reparameterisation noise and the binarisation.
    beta: weight of the KL term (1: the ELBO).
    weighting: 'elbo' (default) or 'seed' (the report's down-weighted KL; see training_loss).
    dynamic_binarization: resample binary pixels from the grey levels at every step.

  Returns:
    (new state, metrics): 'loss' (the optimised scalar), and batch means in nats per image of
    'neg_elbo', 'recon' and 'kl', all before the update.
  """
  noise_rng, binarize_rng = jax.random.split(rng)
  images = batch['image']
  if dynamic_binarization:
    images = binarize(images, binarize_rng)
  num_pixels = images[0].size

  def loss_fn(params):
    logits, mean, logvar = state.apply_fn({'params': params}, images, noise_rng)
    parts = losses.negative_elbo(logits=logits, targets=images, mean=mean, logvar=logvar)
    loss = training_loss(parts, beta=beta, weighting=weighting, num_pixels=num_pixels,
                         latent_dim=mean.shape[-1])
    return loss, parts

  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics = {'loss': loss, **{k: v.mean() for k, v in parts.items()}}
  return state.apply_gradients(grads=grads), metrics


def importance_weighted_nll(apply_fn: Callable[..., Any], params: Any, images: jax.Array,
                            rng: jax.Array, num_samples: int, samples_per_pass: int) -> jax.Array:
  """IWAE bound on -log p(x) with `num_samples` samples per image.

  The decoder runs on `samples_per_pass` samples of every image at a time (lax.map over passes),
  so memory stays bounded for any K. With K=1 this is the one-sample negative ELBO.

  Args:
    apply_fn: a ConvVAE's `apply` (e.g. state.apply_fn); its `encode` and `decode` methods are used.
    params: the model's 'params' collection.
    images: [B, H, W, C] float32 in [0, 1].
    rng: PRNG key for the samples.
    num_samples: K, samples per image.
    samples_per_pass: samples per image decoded at a time.

  Returns:
    [B] float32, nats per image.
  """
  mean, logvar = apply_fn({'params': params}, images, method='encode')
  passes = -(-num_samples // samples_per_pass)

  def log_weights(pass_rng):
    eps = jax.random.normal(pass_rng, (samples_per_pass, *mean.shape), mean.dtype)
    z = mean + jnp.exp(0.5 * logvar) * eps  # [S, B, L]
    logits = apply_fn({'params': params}, z.reshape(-1, z.shape[-1]), method='decode')
    logits = logits.reshape(samples_per_pass, *images.shape)
    return losses.iwae_log_weights(logits=logits, targets=images, z=z, mean=mean, logvar=logvar)

  log_w = jax.lax.map(log_weights, jax.random.split(rng, passes))  # [P, S, B]
  log_w = log_w.reshape(-1, images.shape[0])[:num_samples]
  return losses.iwae_nll(log_weights=log_w)


def eval_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
              num_importance_samples: int = 100, samples_per_pass: int | None = None,
              dynamic_binarization: bool = False) -> dict[str, jax.Array]:
  """Test metrics summed over the batch's valid images (divide by 'count' for means).

  Args:
    state: TrainState of a ConvVAE (or of a model with its `encode` and `decode` methods).
    batch: {'image': [B, H, W, C] float32 in [0, 1], 'mask': optional [B] bool}.
    rng: PRNG key (fix it for comparable evaluations).
    num_importance_samples: K of the IWAE bound.
    samples_per_pass: decoder samples per image at a time (default: ~1,000 decoded images a pass).
    dynamic_binarization: evaluate on binary pixels sampled from the grey levels (with `rng`).

  Returns:
    Sums over valid images of 'neg_elbo', 'recon', 'kl' (one-sample estimates) and 'iwae_nll'
    (nats per image each), and 'count'.
  """
  images = batch['image']
  mask = batch.get('mask', jnp.ones(images.shape[0], bool)).astype(jnp.float32)
  elbo_rng, iwae_rng, binarize_rng = jax.random.split(rng, 3)
  if dynamic_binarization:
    images = binarize(images, binarize_rng)
  logits, mean, logvar = state.apply_fn({'params': state.params}, images, elbo_rng)
  parts = losses.negative_elbo(logits=logits, targets=images, mean=mean, logvar=logvar)
  per_pass = samples_per_pass or max(1, min(num_importance_samples, 1000 // images.shape[0]))
  parts['iwae_nll'] = importance_weighted_nll(state.apply_fn, state.params, images, iwae_rng,
                                              num_importance_samples, per_pass)
  sums = {k: (v * mask).sum() for k, v in parts.items()}
  sums['count'] = mask.sum()
  return sums


def encode(state: TrainState, images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The posterior q(z | x): images [B, H, W, C] in [0, 1] -> (mean, logvar), each [B, L]
  float32."""
  return state.apply_fn({'params': state.params}, images, method='encode')


def decode(state: TrainState, z: jax.Array) -> jax.Array:
  """Bernoulli pixel means p(x | z): latents [B, L] -> images [B, H, W, C] float32 in [0, 1]."""
  return jax.nn.sigmoid(state.apply_fn({'params': state.params}, z, method='decode'))


def sample(state: TrainState, rng: jax.Array, num_samples: int, latent_dim: int) -> jax.Array:
  """New images: decoder means of z ~ N(0, I) drawn with `rng`.

  Args:
    state: TrainState of a ConvVAE (or of a model with a `decode` method).
    rng: PRNG key for z.
    num_samples: how many images (static under jit).
    latent_dim: the size of z (ConvVAE.latent_dim).

  Returns:
    [num_samples, H, W, C] float32 in [0, 1].
  """
  return decode(state, jax.random.normal(rng, (num_samples, latent_dim), jnp.float32))
