"""The report's convolutional autoencoder as a Flax module (both the plain and the denoising
widths).

Encoder: three Conv(3x3, SAME, relu) each followed by a 2x2 max pool (28 -> 14 -> 7 -> 4).
Decoder: nearest resize to 7, 14 and 28, each followed by Conv(3x3, relu), then Conv(1, 3x3)
logits.
  - autoencoder:           encoder 16-8-8,  decoder 8-8-16   (code 4x4x8 = 128 values)
  - denoising autoencoder: encoder 32-32-16, decoder 16-32-32 (code 4x4x16)
The report's denoising graph fed conv4 (not conv5) to the last upsample, leaving conv5 dead; this
module always wires the decoder in sequence. Kernels start from `kernel_init` ('glorot_uniform',
TF1's `tf.layers.conv2d` default in the report, or 'lecun_normal', Flax's default); biases at zero.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gan_aec import layers


class ConvAutoencoder(nn.Module):
  """Maps images [B, H, W, C] in [0, 1] to reconstruction logits [B, H, W, C] (float32)."""
  encoder_features: Sequence[int] = (16, 8, 8)
  decoder_features: Sequence[int] = (8, 8, 16)
  out_channels: int = 1
  # gan_aec.layers.Conv implementation: 'auto' (the XLA:CPU-friendly form on CPU), 'fast' or 'xla'.
  conv_implementation: str = 'auto'
  kernel_init: str = 'glorot_uniform'  # Or 'lecun_normal'.
  # Activations and matmuls in this dtype (jnp.bfloat16 for speed on GPU/TPU); parameters stay
  # float32 and the outputs are float32.
  dtype: Any = jnp.float32

  def setup(self) -> None:
    """Declares the encoder and decoder convolutions (Flax calls this on first use)."""
    inits = {'glorot_uniform': nn.initializers.glorot_uniform(),
             'lecun_normal': nn.initializers.lecun_normal()}
    if self.kernel_init not in inits:
      raise ValueError(f'kernel_init must be one of {sorted(inits)}, got {self.kernel_init!r}.')
    conv = functools.partial(layers.Conv, kernel_size=(3, 3),
                             implementation=self.conv_implementation,
                             kernel_init=inits[self.kernel_init], dtype=self.dtype)
    self.encoder_convs = [conv(f, name=f'encoder_conv{i}')
                          for i, f in enumerate(self.encoder_features)]
    self.decoder_convs = [conv(f, name=f'decoder_conv{i}')
                          for i, f in enumerate(self.decoder_features)]
    self.logits_conv = conv(self.out_channels, name='logits_conv')

  def encode(self, images_BHWC: jax.Array) -> tuple[jax.Array, list[tuple[int, int]]]:
    """Returns the code [B, h, w, encoder_features[-1]] and the spatial sizes to decode back to."""
    x, sizes = images_BHWC, []
    for conv in self.encoder_convs:
      sizes.append(x.shape[1:3])
      x = layers.max_pool_2x2(nn.relu(conv(x)))
    return x.astype(jnp.float32), sizes[::-1]

  def decode(self, code: jax.Array, sizes: Sequence[tuple[int, int]]) -> jax.Array:
    """Reconstruction logits [B, H, W, C] of a code from `encode`, resized through `sizes`."""
    x = code
    for conv, size in zip(self.decoder_convs, sizes):
      x = nn.relu(conv(layers.nearest_resize(x, size)))
    return self.logits_conv(x).astype(jnp.float32)

  def __call__(self, images_BHWC: jax.Array) -> jax.Array:
    """Reconstruction logits [B, H, W, C] (float32, any range) of images [B, H, W, C] in [0, 1]."""
    code, sizes = self.encode(images_BHWC)
    return self.decode(code, sizes)
