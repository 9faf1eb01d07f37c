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
  """KL(N(mean, exp(logvar)) || N(0, I)) summed over latents: [B, L] -> [B], nats."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def negative_elbo(*, logits: jax.Array, targets: jax.Array, mean: jax.Array,
                  logvar: jax.Array) -> dict[str, jax.Array]:
  """The negative ELBO of each image and its two parts, each [B], nats per image.

  neg_elbo = recon + kl, with recon = -log p(x | z) for one z ~ q(z | x) and kl = KL(q(z|x) || p(z)).
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
    logits: [K, B, H, W, C] decoder logits of each sample.
    targets: [B, H, W, C] in [0, 1].
    z: [K, B, L] samples from q(z | x); mean, logvar: [B, L].

  Returns:
    [K, B] log importance weights; -logsumexp over K + log K is the IWAE bound on -log p(x).
  """
  log_px_z = -jax.vmap(lambda l: bernoulli_nll(logits=l, targets=targets))(logits)
  zeros = jnp.zeros_like(mean)
  log_pz = gaussian_log_prob(z, zeros, zeros)
  log_qz = gaussian_log_prob(z, mean[None], logvar[None])
  return log_px_z + log_pz - log_qz


def iwae_nll(log_weights_KB: jax.Array) -> jax.Array:
  """-log (1/K sum_k w_k) per image from [K, B] log weights: [B], nats (an upper bound on -log p(x))."""
  k = log_weights_KB.shape[0]
  return -(jax.nn.logsumexp(log_weights_KB, axis=0) - math.log(k))
