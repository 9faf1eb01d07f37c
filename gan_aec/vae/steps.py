"""Pure train and eval steps of the convolutional VAE.

Both are module-level functions of explicit arguments; the model and optimizer come from the state
(`state.apply_fn`, `state.tx`). The reparameterisation (and the dynamic binarisation, when on)
draws from the step's `rng`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gan_aec.train_state import TrainState
from gan_aec.vae import losses
from gan_aec.vae.model import reparameterize

# The seed's loss: mean BCE over pixels + 5e-4 * mean KL over latents (a heavily down-weighted KL).
SEED_KL_WEIGHT = 5e-4


def binarize(images: jax.Array, rng: jax.Array) -> jax.Array:
  """Dynamic binarisation: each pixel is 1 with probability equal to its grey level in [0, 1]."""
  return jax.random.bernoulli(rng, images).astype(images.dtype)


def training_loss(parts: dict[str, jax.Array], *, beta: float, weighting: str,
                  num_pixels: int, latent_dim: int) -> jax.Array:
  """The scalar the optimizer minimises, from negative_elbo's per-image parts.

  weighting='elbo': mean over images of recon + beta * kl (nats per image; beta=1 is the ELBO).
  weighting='seed': the seed report's mean BCE per pixel + 5e-4 * mean KL per latent.
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
    state: TrainState of a ConvVAE.
    batch: {'image': [B, H, W, C] float32 in [0, 1]}; other keys are ignored.
    rng: PRNG key for the reparameterisation noise and the binarisation.
    beta: weight of the KL term (1: the ELBO).
    weighting: 'elbo' (default) or 'seed' (the seed report's down-weighted KL; see training_loss).
    dynamic_binarization: resample binary pixels from the grey levels at every step.

  Returns:
    (new state, metrics): 'loss' (the optimised scalar), and batch means in nats per image of
    'neg_elbo', 'recon' and 'kl', all before the update.
  """
  noise_rng, binarize_rng = jax.random.split(rng)
  images = batch['image']
  if dynamic_binarization:
    images = binarize(images, binarize_rng)
  num_pixels, latent_dim = images[0].size, state.params['mean']['bias'].shape[0]

  def loss_fn(params):
    logits, mean, logvar = state.apply_fn({'params': params}, images, noise_rng)
    parts = losses.negative_elbo(logits=logits, targets=images, mean=mean, logvar=logvar)
    loss = training_loss(parts, beta=beta, weighting=weighting, num_pixels=num_pixels,
                         latent_dim=latent_dim)
    return loss, parts

  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics = {'loss': loss, **{k: v.mean() for k, v in parts.items()}}
  return state.apply_gradients(grads=grads), metrics


def importance_weighted_nll(apply_fn, params, images: jax.Array, rng: jax.Array,
                            num_samples: int, samples_per_pass: int) -> jax.Array:
  """IWAE bound on -log p(x) with `num_samples` samples per image: [B], nats per image.

  The decoder runs on `samples_per_pass` samples of every image at a time (lax.map over passes),
  so memory stays bounded for any K. With K=1 this is the one-sample negative ELBO.
  `apply_fn` is a ConvVAE's `apply` (e.g. state.apply_fn).
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
  return losses.iwae_nll(log_w)


def eval_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array, *,
              num_importance_samples: int = 100, samples_per_pass: int | None = None,
              dynamic_binarization: bool = False) -> dict[str, jax.Array]:
  """Test metrics summed over the batch's valid images (divide by 'count' for means).

  Args:
    state: TrainState of a ConvVAE.
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


__all__ = ['binarize', 'eval_step', 'importance_weighted_nll', 'reparameterize', 'train_step',
           'training_loss']
