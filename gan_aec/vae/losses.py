"""The VAE's ELBO and importance-weighted bound, in nats per image: small pure functions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

_LOG_2PI = math.log(2 * math.pi)


def bernoulli_nll(*, logits: jax.Array, targets: jax.Array) -> jax.Array:
  """-log p(x | z) of Bernoulli pixels, summed over pixels.

  Args:
    logits: [B, H, W, C] float, the decoder's output.
    targets: [B, H, W, C] float in [0, 1] (binary, or grey levels as a continuous relaxation).

  Returns:
    [B] float32, nats per image.
  """
  nll = optax.sigmoid_binary_cross_entropy(logits, targets)
  return nll.reshape(nll.shape[0], -1).sum(axis=1)


def gaussian_kl(*, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, I)) summed over latents, in closed form.

  Args:
    mean: [B, L] float, the posterior's means.
    logvar: [B, L] float, the posterior's log-variances (any real value).

  Returns:
    [B] float32, nats per image (>= 0).
  """
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def negative_elbo(*, logits: jax.Array, targets: jax.Array, mean: jax.Array,
                  logvar: jax.Array) -> dict[str, jax.Array]:
  """The negative ELBO of each image and its two parts: Bernoulli pixels, Gaussian posterior.

  neg_elbo = recon + kl, with recon = -log p(x | z) for one z ~ q(z | x) and
  kl = KL(q(z|x) || p(z)), p(z) = N(0, I). Any encoder and decoder fit: only their outputs are
  needed.

  Args:
    logits: [B, H, W, C] float, the decoder's pixel logits for z ~ q(z | x) (e.g. drawn with
      gan_aec.vae.reparameterize, so that gradients reach the encoder).
    targets: [B, H, W, C] float in [0, 1], the images x.
    mean: [B, L] float, the encoder's posterior means.
    logvar: [B, L] float, the encoder's posterior log-variances.

  Returns:
    {'neg_elbo', 'recon', 'kl'}: each [B] float32, nats per image (an upper bound on -log p(x)
    in expectation; minimise the mean of 'neg_elbo').
  """
  recon = bernoulli_nll(logits=logits, targets=targets)
  kl = gaussian_kl(mean=mean, logvar=logvar)
  return {'neg_elbo': recon + kl, 'recon': recon, 'kl': kl}


def gaussian_log_prob(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mean, exp(logvar)) summed over the last axis."""
  return -0.5 * jnp.sum(_LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar), axis=-1)


def iwae_log_weights(*, logits: jax.Array, targets: jax.Array, z: jax.Array, mean: jax.Array,
                     logvar: jax.Array) -> jax.Array:
  """log p(x, z_k) - log q(z_k | x) for K samples z_k of each image.

  Args:
    logits: [K, B, H, W, C] float, decoder logits of each sample.
    targets: [B, H, W, C] float in [0, 1].
    z: [K, B, L] float, samples from q(z | x).
    mean: [B, L] float, the posterior means.
    logvar: [B, L] float, the posterior log-variances.

  Returns:
    [K, B] float32 log importance weights; iwae_nll turns them into the IWAE bound on -log p(x).
  """
  log_px_z = -jax.vmap(lambda logits_k: bernoulli_nll(logits=logits_k, targets=targets))(logits)
  zeros = jnp.zeros_like(mean)
  log_pz = gaussian_log_prob(z, zeros, zeros)
  log_qz = gaussian_log_prob(z, mean[None], logvar[None])
  return log_px_z + log_pz - log_qz


def iwae_nll(*, log_weights: jax.Array) -> jax.Array:
  """The importance-weighted bound -log (1/K sum_k w_k) of each image (Burda et al. 2016).

  Args:
    log_weights: [K, B] float, log importance weights from iwae_log_weights.

  Returns:
    [B] float32, nats per image: an upper bound on -log p(x) that tightens as K grows (K = 1 is
    the one-sample negative ELBO).
  """
  k = log_weights.shape[0]
  return -(jax.nn.logsumexp(log_weights, axis=0) - math.log(k))
