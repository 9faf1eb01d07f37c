"""The report's DCGAN generator and discriminator (28x28), and the DCGAN paper's 64x64 stack.

Generator, 28x28 (z: 100-d uniform in [-1, 1]): Dense(4*4*512) -> reshape -> BN -> LeakyReLU(0.2)
  -> Dropout(0.1) -> ConvTranspose(256, 5x5, s2) [8x8] -> nearest resize to 7x7 -> BN -> LReLU ->
  Dropout -> ConvTranspose(128, 5x5, s2) [14] -> BN -> LReLU -> Dropout ->
  ConvTranspose(C, 5x5, s2) [28] -> tanh.
Generator, 64x64: Dense(4*4*1024) -> BN/LReLU/Dropout -> ConvTranspose 512 [8], 256 [16], 128 [32]
  (each BN/LReLU/Dropout) -> ConvTranspose(C) [64] -> tanh.
Discriminator: Conv(64, 5x5, s2) -> LReLU -> Dropout -> Conv(128, 5x5, s2) -> BN -> LReLU -> Dropout
  -> Conv(256, 5x5, s2) -> BN -> LReLU -> Dropout [-> Conv(512, 5x5, s2) -> BN -> ... at 64x64] ->
  Flatten -> Dense(1) logit.
Kernels are Glorot-uniform (the report's Xavier); BatchNorm uses TF1's momentum 0.99 and epsilon
1e-3. Dropout keeps 90% as in the original report. Images are [B, H, W, C] in [-1, 1].
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_aec import layers

LEAKY_SLOPE = 0.2
DROPOUT_RATE = 0.1  # The original report's keep probability 0.9.

_BatchNorm = functools.partial(nn.BatchNorm, momentum=0.99, epsilon=1e-3)


def _layer_widths(image_size: int) -> tuple[Sequence[int], Sequence[int]]:
  """(generator widths from 4x4 up, discriminator widths) for 28x28 (the report) or 64x64."""
  if image_size == 28:
    return (512, 256, 128), (64, 128, 256)
  if image_size == 64:
    return (1024, 512, 256, 128), (64, 128, 256, 512)
  raise ValueError(f'image_size must be 28 (the report) or 64 (the DCGAN paper), got {image_size}.')


class Generator(nn.Module):
  """z [B, latent_dim] in [-1, 1] -> images [B, S, S, channels] in [-1, 1] (tanh)."""
  image_size: int = 28
  channels: int = 1
  conv_implementation: str = 'auto'
  # Activations and matmuls in this dtype (jnp.bfloat16 for speed on GPU/TPU); parameters stay
  # float32 and the outputs are float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z_BL: jax.Array, *, train: bool) -> jax.Array:
    """Images [B, S, S, channels] float32 in [-1, 1] from z [B, latent_dim].

    train=True: dropout on (needs a 'dropout' rng) and BatchNorm on batch statistics (pass
    mutable=['batch_stats']); train=False: inference mode with the running statistics.
    """
    widths, _ = _layer_widths(self.image_size)
    xavier = nn.initializers.glorot_uniform()

    def norm_act_drop(x):
      x = _BatchNorm(use_running_average=not train, dtype=self.dtype)(x)
      x = nn.leaky_relu(x, LEAKY_SLOPE)
      return layers.Dropout(DROPOUT_RATE, deterministic=not train)(x)

    x = nn.Dense(4 * 4 * widths[0], kernel_init=xavier, dtype=self.dtype)(z_BL)
    x = x.reshape(-1, 4, 4, widths[0])
    x = norm_act_drop(x)
    for i, width in enumerate(widths[1:]):
      x = layers.ConvTranspose(width, (5, 5), kernel_init=xavier, dtype=self.dtype,
                               implementation=self.conv_implementation)(x)
      if self.image_size == 28 and i == 0:
        x = layers.nearest_resize(x, (7, 7))  # 8x8 -> 7x7, so that two more doublings give 28.
      x = norm_act_drop(x)
    x = layers.ConvTranspose(self.channels, (5, 5), kernel_init=xavier, dtype=self.dtype,
                             implementation=self.conv_implementation)(x)
    return nn.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """Images [B, S, S, C] in [-1, 1] -> real/fake logits [B]."""
  image_size: int = 28
  conv_implementation: str = 'auto'
  # Activations and matmuls in this dtype (jnp.bfloat16 for speed on GPU/TPU); parameters stay
  # float32 and the outputs are float32.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images_BHWC: jax.Array, *, train: bool) -> jax.Array:
    """Real/fake logits [B] float32 of images [B, S, S, C] in [-1, 1]; `train` as in Generator."""
    _, widths = _layer_widths(self.image_size)
    xavier = nn.initializers.glorot_uniform()
    x = images_BHWC
    for i, width in enumerate(widths):
      x = layers.Conv(width, (5, 5), strides=(2, 2), kernel_init=xavier, dtype=self.dtype,
                      implementation=self.conv_implementation)(x)
      if i > 0:  # No BatchNorm on the first layer, as in DCGAN.
        x = _BatchNorm(use_running_average=not train, dtype=self.dtype)(x)
      x = nn.leaky_relu(x, LEAKY_SLOPE)
      x = layers.Dropout(DROPOUT_RATE, deterministic=not train)(x)
    logits = nn.Dense(1, kernel_init=xavier, dtype=self.dtype)(x.reshape(x.shape[0], -1))
    return logits[:, 0].astype(jnp.float32)
