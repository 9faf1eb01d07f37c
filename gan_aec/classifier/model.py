"""The classifier whose penultimate layer is the feature space of FID, KID, precision/recall.

Blocks of Conv(3x3, SAME, relu) layers, each block then a 2x2 max pool (by default two blocks,
widths 32-32 and 64-64: 28 -> 14 -> 7; a block with no convolution is a pool alone, as in
mnist-clf-v1's third, gan_aec.classifier.shipped), then Dense(128, relu) = the features, dropout,
Dense(num_classes) = the logits. The usual MNIST CNN shape; it is small so that 10,000 samples
are embedded in a second or two on a CPU.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax

from gan_aec import layers


class Classifier(nn.Module):
  """Images [B, H, W, C] in [0, 1] -> logits [B, num_classes] (float32)."""
  num_classes: int = 10
  conv_features: Sequence[Sequence[int]] = ((32, 32), (64, 64))
  feature_dim: int = 128
  dropout_rate: float = 0.5
  conv_implementation: str = 'auto'  # gan_aec.layers.Conv: 'auto', 'fast' or 'xla'.

  def setup(self) -> None:
    """Declares the convolutions and dense layers (Flax calls this on first use)."""
    conv = functools.partial(layers.Conv, kernel_size=(3, 3),
                             implementation=self.conv_implementation)
    self.convs = [[conv(f, name=f'block{b}_conv{i}') for i, f in enumerate(block)]
                  for b, block in enumerate(self.conv_features)]
    self.feature_dense = nn.Dense(self.feature_dim, name='feature_dense')
    self.dropout = nn.Dropout(self.dropout_rate)
    self.logits_dense = nn.Dense(self.num_classes, name='logits_dense')

  def features(self, images_BHWC: jax.Array) -> jax.Array:
    """The penultimate activations [B, feature_dim] (after relu, before dropout)."""
    x = images_BHWC
    for block in self.convs:
      for conv in block:
        x = nn.relu(conv(x))
      x = layers.max_pool_2x2(x)
    return nn.relu(self.feature_dense(x.reshape(x.shape[0], -1)))

  def features_and_logits(self, images_BHWC: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Inference: (features [B, feature_dim], logits [B, num_classes])."""
    features = self.features(images_BHWC)
    return features, self.logits_dense(features)

  def __call__(self, images_BHWC: jax.Array, *, train: bool = False) -> jax.Array:
    """Logits [B, num_classes]; with train=True dropout is on (needs a 'dropout' rng)."""
    return self.logits_dense(self.dropout(self.features(images_BHWC), deterministic=not train))
