"""gan_aec's models in PyTorch: the same layer stacks, the same functions for the same weights.

Each module computes exactly the function of its gan_aec counterpart when given the same weights
(`load_flax_params` copies them; tests/test_pytorch_port.py checks outputs against gan_aec): NHWC
flattening before dense layers, TensorFlow's SAME padding (asymmetric for stride 2, which
PyTorch's symmetric `padding=` cannot express), TF1's nearest resize, 2x2 max pools with SAME
padding. Initialisation is PyTorch's own unless the gan_aec config names an initialiser
(`init=`): that is what a PyTorch user porting the config would get.

PyTorch is not a dependency of gan_aec; install it to use this folder (`pip install torch`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
  """TensorFlow/XLA SAME padding (low, high) of one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + k - size, 0)
  return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
  """Conv2d with TensorFlow's SAME padding (asymmetric when the total padding is odd)."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    (k, _), (s, _) = self.kernel_size, self.stride
    top, bottom = same_pads(x.shape[2], k, s)
    left, right = same_pads(x.shape[3], k, s)
    if top == bottom and left == right:  # PyTorch's own (symmetric) padding: no extra copy.
      return F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
    return super().forward(F.pad(x, (left, right, top, bottom)))


class SameConvTranspose2d(nn.ConvTranspose2d):
  """ConvTranspose2d with the output window of `lax.conv_transpose(..., 'SAME')` (stride 2).

  Output size stride * input size. The full transposed convolution is cropped from offset
  (k - stride) // 2, where XLA's SAME rule puts it (PyTorch's padding/output_padding arguments can
  only crop symmetrically). Its kernel is the spatially flipped Flax kernel (load_flax_params).
  """

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 2):
    super().__init__(in_channels, out_channels, kernel_size, stride, padding=0)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    (k, _), (s, _) = self.kernel_size, self.stride
    y = super().forward(x)
    lo = (k - s) // 2
    return y[:, :, lo:lo + s * x.shape[2], lo:lo + s * x.shape[3]]


def nearest_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
  """TF1's resize_nearest_neighbor (floor(i * in / out)), as gan_aec.layers.nearest_resize."""
  rows = np.floor(np.arange(size[0]) * (x.shape[2] / size[0])).astype(np.int64)
  cols = np.floor(np.arange(size[1]) * (x.shape[3] / size[1])).astype(np.int64)
  return x[:, :, torch.from_numpy(rows)][:, :, :, torch.from_numpy(cols)]


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
  """2x2 max pool, stride 2, SAME (odd sizes padded at the end): ceil_mode does exactly that."""
  return F.max_pool2d(x, 2, 2, ceil_mode=True)


def flatten_nhwc(x: torch.Tensor) -> torch.Tensor:
  """[B, C, H, W] -> [B, H * W * C] in NHWC order, so dense weights map 1:1 to Flax's."""
  return x.permute(0, 2, 3, 1).flatten(1)


def unflatten_nhwc(x: torch.Tensor, h: int, w: int, c: int) -> torch.Tensor:
  return x.view(-1, h, w, c).permute(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------------
# Initialisers named by gan_aec configs ('torch' keeps PyTorch's default).
# ------------------------------------------------------------------------------------------------

def _fans(weight: torch.Tensor, transposed: bool) -> tuple[int, int]:
  receptive = weight[0, 0].numel() if weight.dim() > 2 else 1
  a, b = weight.shape[0], weight.shape[1]
  if transposed:  # ConvTranspose2d weights are [in, out, kh, kw].
    return a * receptive, b * receptive
  return b * receptive, a * receptive  # Linear [out, in], Conv2d [out, in, kh, kw].


INITIALIZERS = ('torch', 'glorot_uniform', 'lecun_normal', 'uniform_fan_in')


def initialize(module: nn.Module, init: str) -> nn.Module:
  """Re-initialises every conv and linear layer as gan_aec's models do: 'glorot_uniform',
  'lecun_normal' (Flax's truncated normal) or 'uniform_fan_in' (uniform in +-1/sqrt(fan_in))
  kernels with zero biases; or 'torch' (PyTorch's default, biases included: nothing changes)."""
  if init == 'torch':
    return module
  if init not in INITIALIZERS:
    raise ValueError(f'init must be one of {INITIALIZERS}, got {init!r}.')
  for layer in module.modules():
    if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
      fan_in, fan_out = _fans(layer.weight, isinstance(layer, nn.ConvTranspose2d))
      with torch.no_grad():
        if init == 'glorot_uniform':
          bound = math.sqrt(6.0 / (fan_in + fan_out))
          layer.weight.uniform_(-bound, bound)
        elif init == 'uniform_fan_in':
          bound = 1.0 / math.sqrt(fan_in)
          layer.weight.uniform_(-bound, bound)
        else:
          # Flax: truncated normal on (-2, 2) with the std corrected for the truncation.
          std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
          nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
        layer.bias.zero_()
  return module


# ------------------------------------------------------------------------------------------------
# The models.
# ------------------------------------------------------------------------------------------------

class ConvAutoencoder(nn.Module):
  """gan_aec.autoencoder.ConvAutoencoder: images [B, C, 28, 28] in [0, 1] -> logits."""

  def __init__(self, encoder_features: Sequence[int] = (16, 8, 8),
               decoder_features: Sequence[int] = (8, 8, 16), channels: int = 1):
    super().__init__()
    widths = [channels, *encoder_features]
    self.encoder_convs = nn.ModuleList(SameConv2d(a, b, 3) for a, b in zip(widths, widths[1:]))
    widths = [encoder_features[-1], *decoder_features]
    self.decoder_convs = nn.ModuleList(SameConv2d(a, b, 3) for a, b in zip(widths, widths[1:]))
    self.logits_conv = SameConv2d(decoder_features[-1], channels, 3)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    sizes = []
    for conv in self.encoder_convs:
      sizes.append(tuple(x.shape[2:]))
      x = max_pool_2x2(F.relu(conv(x)))
    for conv, size in zip(self.decoder_convs, sizes[::-1]):
      x = F.relu(conv(nearest_resize(x, size)))
    return self.logits_conv(x)


class ConvVAE(nn.Module):
  """gan_aec.vae.ConvVAE: images [B, C, H, W] in [0, 1] <-> latents [B, latent_dim]."""

  def __init__(self, latent_dim: int = 2, image_shape: tuple[int, int, int] = (28, 28, 1)):
    super().__init__()
    h, w, c = image_shape
    self.image_shape = image_shape
    self.encoder_convs = nn.ModuleList([SameConv2d(c, 32, 3), SameConv2d(32, 64, 3, 2),
                                        SameConv2d(64, 64, 3), SameConv2d(64, 64, 3)])
    self.encoder_dense = nn.Linear((h // 2) * (w // 2) * 64, 32)
    self.mean = nn.Linear(32, latent_dim)
    self.logvar = nn.Linear(32, latent_dim)
    self.decoder_dense = nn.Linear(latent_dim, (h // 2) * (w // 2) * 64)
    self.decoder_deconv = SameConvTranspose2d(64, 32, 3)
    self.logits_conv = SameConv2d(32, c, 3)

  def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for conv in self.encoder_convs:
      x = F.relu(conv(x))
    x = F.relu(self.encoder_dense(flatten_nhwc(x)))
    return self.mean(x), self.logvar(x)

  def decode(self, z: torch.Tensor) -> torch.Tensor:
    h, w, _ = self.image_shape
    x = unflatten_nhwc(F.relu(self.decoder_dense(z)), h // 2, w // 2, 64)
    return self.logits_conv(F.relu(self.decoder_deconv(x)))

  def forward(self, x: torch.Tensor,
              eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mean, logvar = self.encode(x)
    eps = torch.randn_like(mean) if eps is None else eps
    return self.decode(mean + torch.exp(0.5 * logvar) * eps), mean, logvar


class Generator(nn.Module):
  """gan_aec.dcgan.Generator at 28x28: z [B, 100] in [-1, 1] -> images [B, C, 28, 28] in [-1, 1]."""

  def __init__(self, latent_dim: int = 100, channels: int = 1, dropout: float = 0.1):
    super().__init__()
    self.dense = nn.Linear(latent_dim, 4 * 4 * 512)
    # Flax's BatchNorm(momentum=0.99, epsilon=1e-3) is PyTorch's momentum 0.01.
    self.bns = nn.ModuleList(nn.BatchNorm2d(c, eps=1e-3, momentum=0.01) for c in (512, 256, 128))
    self.deconvs = nn.ModuleList([SameConvTranspose2d(512, 256, 5),
                                  SameConvTranspose2d(256, 128, 5),
                                  SameConvTranspose2d(128, channels, 5)])
    self.dropout = dropout

  def _act(self, x: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    return F.dropout(F.leaky_relu(bn(x), 0.2), self.dropout, self.training)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = self._act(unflatten_nhwc(self.dense(z), 4, 4, 512), self.bns[0])
    x = nearest_resize(self.deconvs[0](x), (7, 7))
    x = self._act(x, self.bns[1])
    x = self._act(self.deconvs[1](x), self.bns[2])
    return torch.tanh(self.deconvs[2](x))


class Discriminator(nn.Module):
  """gan_aec.dcgan.Discriminator at 28x28: images [B, C, 28, 28] in [-1, 1] -> logits [B]."""

  def __init__(self, channels: int = 1, dropout: float = 0.1):
    super().__init__()
    self.convs = nn.ModuleList([SameConv2d(channels, 64, 5, 2), SameConv2d(64, 128, 5, 2),
                                SameConv2d(128, 256, 5, 2)])
    self.bns = nn.ModuleList([nn.Identity(), nn.BatchNorm2d(128, eps=1e-3, momentum=0.01),
                              nn.BatchNorm2d(256, eps=1e-3, momentum=0.01)])
    self.dense = nn.Linear(4 * 4 * 256, 1)
    self.dropout = dropout

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for conv, bn in zip(self.convs, self.bns):
      x = F.dropout(F.leaky_relu(bn(conv(x)), 0.2), self.dropout, self.training)
    return self.dense(flatten_nhwc(x))[:, 0]


class Classifier(nn.Module):
  """gan_aec.classifier.Classifier: images [B, 1, 28, 28] in [0, 1] -> logits [B, 10].

  Blocks of 3x3 SAME convolutions with ReLU, each block followed by a 2x2 max pool (a block with
  no convolution is a pool alone), then Dense(feature_dim, relu) = the features, dropout, logits.
  """

  def __init__(self, conv_features: Sequence[Sequence[int]] = ((32, 32), (64, 64)),
               feature_dim: int = 128, num_classes: int = 10, dropout: float = 0.5,
               image_size: int = 28, channels: int = 1):
    super().__init__()
    convs, width, size = [], channels, image_size
    for block in conv_features:
      layers = []
      for features in block:
        layers.append(SameConv2d(width, features, 3))
        width = features
      convs.append(nn.ModuleList(layers))
      size = -(-size // 2)
    self.blocks = nn.ModuleList(convs)
    self.feature_dense = nn.Linear(size * size * width, feature_dim)
    self.logits_dense = nn.Linear(feature_dim, num_classes)
    self.dropout = dropout

  def features(self, x: torch.Tensor) -> torch.Tensor:
    for block in self.blocks:
      for conv in block:
        x = F.relu(conv(x))
      x = max_pool_2x2(x)
    return F.relu(self.feature_dense(flatten_nhwc(x)))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.logits_dense(F.dropout(self.features(x), self.dropout, self.training))


# ------------------------------------------------------------------------------------------------
# Weights from gan_aec (Flax) parameters, for equivalence checks.
# ------------------------------------------------------------------------------------------------

def _copy(param: torch.Tensor, value) -> None:
  value = torch.from_numpy(np.ascontiguousarray(np.asarray(value, np.float32)))
  if param.shape != value.shape:
    raise ValueError(f'shape {tuple(value.shape)} does not fit parameter {tuple(param.shape)}')
  with torch.no_grad():
    param.copy_(value)


def load_layer(layer: nn.Module, flax_params: dict) -> None:
  """Copies one Flax layer's {'kernel', 'bias'} into a Linear, SameConv2d or SameConvTranspose2d."""
  kernel = np.asarray(flax_params['kernel'])
  if isinstance(layer, nn.Linear):
    _copy(layer.weight, kernel.T)
  elif isinstance(layer, nn.ConvTranspose2d):  # lax.conv_transpose's kernel is not flipped.
    _copy(layer.weight, kernel[::-1, ::-1].transpose(2, 3, 0, 1))
  else:
    _copy(layer.weight, kernel.transpose(3, 2, 0, 1))
  _copy(layer.bias, flax_params['bias'])


def _load_batch_norm(bn: nn.BatchNorm2d, params: dict, stats: dict) -> None:
  _copy(bn.weight, params['scale'])
  _copy(bn.bias, params['bias'])
  if stats:
    _copy(bn.running_mean, stats['mean'])
    _copy(bn.running_var, stats['var'])


def _load_gan_network(model: nn.Module, params: dict, batch_stats: dict) -> None:
  """Flax's auto-named layers (Dense_0, ConvTranspose_i / Conv_i, BatchNorm_i) in call order."""
  if isinstance(model, Generator):
    load_layer(model.dense, params['Dense_0'])
    for i, deconv in enumerate(model.deconvs):
      load_layer(deconv, params[f'ConvTranspose_{i}'])
    norms = model.bns
  else:
    for i, conv in enumerate(model.convs):
      load_layer(conv, params[f'Conv_{i}'])
    load_layer(model.dense, params['Dense_0'])
    norms = [bn for bn in model.bns if isinstance(bn, nn.BatchNorm2d)]
  for i, bn in enumerate(norms):
    _load_batch_norm(bn, params[f'BatchNorm_{i}'], batch_stats.get(f'BatchNorm_{i}', {}))


def load_flax_params(model: nn.Module, params: dict, batch_stats: dict | None = None) -> nn.Module:
  """Copies a gan_aec model's Flax 'params' (and 'batch_stats' of a network with BatchNorm) into
  its PyTorch port."""
  if isinstance(model, ConvVAE):
    for i, conv in enumerate(model.encoder_convs):
      load_layer(conv, params[f'encoder_conv{i}'])
    for name in ('encoder_dense', 'mean', 'logvar', 'decoder_dense', 'decoder_deconv',
                 'logits_conv'):
      load_layer(getattr(model, name), params[name])
  elif isinstance(model, ConvAutoencoder):
    for i, conv in enumerate(model.encoder_convs):
      load_layer(conv, params[f'encoder_conv{i}'])
    for i, conv in enumerate(model.decoder_convs):
      load_layer(conv, params[f'decoder_conv{i}'])
    load_layer(model.logits_conv, params['logits_conv'])
  elif isinstance(model, Classifier):
    for b, block in enumerate(model.blocks):
      for i, conv in enumerate(block):
        load_layer(conv, params[f'block{b}_conv{i}'])
    load_layer(model.feature_dense, params['feature_dense'])
    load_layer(model.logits_dense, params['logits_dense'])
  elif isinstance(model, (Generator, Discriminator)):
    _load_gan_network(model, params, batch_stats or {})
  else:
    raise TypeError(f'No Flax parameter mapping for {type(model).__name__}.')
  return model


def to_nchw(images_nhwc: np.ndarray) -> torch.Tensor:
  """[B, H, W, C] numpy images -> a [B, C, H, W] tensor (a copy)."""
  return torch.from_numpy(np.array(np.asarray(images_nhwc).transpose(0, 3, 1, 2)))
