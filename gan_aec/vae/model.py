"""The original report's convolutional VAE as a Flax module.

Encoder: Conv(32, 3x3, relu) -> Conv(64, 3x3, stride 2, relu) [H/2] -> Conv(64, 3x3, relu) ->
  Conv(64, 3x3, relu) -> Flatten -> Dense(32, relu) -> Dense(latent_dim) mean and
  Dense(latent_dim) log-variance.
Decoder: Dense(H/2 * W/2 * 64, relu) -> reshape -> ConvTranspose(32, 3x3, stride 2, relu) [H] ->
  Conv(channels, 3x3) logits of Bernoulli pixel means.
The original report named its second head log-sigma, sampled with exp(log_sigma) but used it as a
log-variance in the KL; here it is a log-variance everywhere: z = mean + exp(logvar / 2) * eps.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_aec import layers


class ConvVAE(nn.Module):
  """Images [B, H, W, C] in [0, 1] (H, W even) <-> latents [B, latent_dim]."""
  latent_dim: int = 2
  image_shape: tuple[int, int, int] = (28, 28, 1)
  conv_implementation: str = 'auto'  # gan_aec.layers implementation: 'auto', 'fast' or 'xla'.
  # Kernel initialisation: 'uniform_fan_in' (uniform in +-1/sqrt(fan_in), PyTorch's default for
  # conv and linear layers) or 'lecun_normal' (Flax's default; kernels with sqrt(3) ~ 1.7x that
  # std, with which RMSprop's first steps can send the log-variance to overflow). Biases are 0.
  kernel_init: str = 'uniform_fan_in'
  # Activations and matmuls in this dtype (jnp.bfloat16 for speed on GPU/TPU); parameters stay
  # float32 and the outputs are float32.
  dtype: Any = jnp.float32

  def setup(self) -> None:
    """Declares the encoder and decoder layers (Flax calls this on first use)."""
    inits = {'lecun_normal': nn.initializers.lecun_normal(),
             'uniform_fan_in': nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')}
    if self.kernel_init not in inits:
      raise ValueError(f'kernel_init must be one of {sorted(inits)}, got {self.kernel_init!r}.')
    init = inits[self.kernel_init]
    conv = functools.partial(layers.Conv, kernel_size=(3, 3), kernel_init=init,
                             implementation=self.conv_implementation, dtype=self.dtype)
    dense = functools.partial(nn.Dense, kernel_init=init, dtype=self.dtype)
    self.encoder_convs = [conv(32, name='encoder_conv0'),
                          conv(64, strides=(2, 2), name='encoder_conv1'),
                          conv(64, name='encoder_conv2'), conv(64, name='encoder_conv3')]
    self.encoder_dense = dense(32, name='encoder_dense')
    self.mean_head = dense(self.latent_dim, name='mean')
    self.logvar_head = dense(self.latent_dim, name='logvar')
    h, w, _ = self.image_shape
    self.decoder_dense = dense((h // 2) * (w // 2) * 64, name='decoder_dense')
    self.decoder_deconv = layers.ConvTranspose(32, (3, 3), kernel_init=init,
                                               implementation=self.conv_implementation,
                                               dtype=self.dtype, name='decoder_deconv')
    self.logits_conv = conv(self.image_shape[-1], name='logits_conv')

  def encode(self, images_BHWC: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Returns the posterior's mean and log-variance, each [B, latent_dim]."""
    x = images_BHWC
    for conv in self.encoder_convs:
      x = nn.relu(conv(x))
    x = nn.relu(self.encoder_dense(x.reshape(x.shape[0], -1)))
    return self.mean_head(x).astype(jnp.float32), self.logvar_head(x).astype(jnp.float32)

  def decode(self, z_BL: jax.Array) -> jax.Array:
    """Returns pixel logits [B, H, W, C] for latents [B, latent_dim]."""
    h, w, _ = self.image_shape
    x = nn.relu(self.decoder_dense(z_BL)).reshape(z_BL.shape[0], h // 2, w // 2, 64)
    return self.logits_conv(nn.relu(self.decoder_deconv(x))).astype(jnp.float32)

  def __call__(self, images_BHWC: jax.Array,
               rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Encodes, samples z with the reparameterisation (noise from `rng`), decodes.

    Returns (logits [B, H, W, C], mean [B, latent_dim], logvar [B, latent_dim]), float32.
    """
    mean, logvar = self.encode(images_BHWC)
    z = reparameterize(mean, logvar, rng)
    return self.decode(z), mean, logvar


def reparameterize(mean: jax.Array, logvar: jax.Array, rng: jax.Array) -> jax.Array:
  """A differentiable sample z = mean + exp(logvar / 2) * eps, eps ~ N(0, I) drawn with `rng`.

  Args:
    mean, logvar: [B, L] float, a diagonal Gaussian's means and log-variances.
    rng: PRNG key.

  Returns:
    [B, L] float, same dtype as mean.
  """
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
