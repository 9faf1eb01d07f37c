"""The seed models in eager PyTorch, timed by `python -m gan_aec.benchmark --pytorch`.

A user's alternative on the same CPU; timing it in the same run makes the speed ratio honest (CPU
speeds vary 30-45% between machines of one kind). Same architectures, optimizers and batch
sizes as our configs; torch is optional and not a dependency of gan_aec.
"""

from __future__ import annotations

import time

import torch
from torch import nn
import torch.nn.functional as F

_TIMERS = {}


def _register(name):
  def wrap(fn):
    _TIMERS[name] = fn
    return fn
  return wrap


class _ConvAutoencoder(nn.Module):
  """Encoder convs each followed by a 2x2 max pool (SAME: ceil_mode), decoder nearest resizes."""

  def __init__(self, encoder, decoder):
    super().__init__()
    widths = [1, *encoder]
    self.encoder = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:]))
    widths = [encoder[-1], *decoder]
    self.decoder = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:]))
    self.logits = nn.Conv2d(decoder[-1], 1, 3, padding=1)

  def forward(self, x):
    for conv in self.encoder:
      x = F.max_pool2d(F.relu(conv(x)), 2, 2, ceil_mode=True)
    for conv, size in zip(self.decoder, (7, 14, 28)):
      x = F.relu(conv(F.interpolate(x, size=(size, size), mode='nearest')))
    return self.logits(x)


def _time_autoencoder(encoder, decoder, noise_std, batch_size, steps, repeats):
  model = _ConvAutoencoder(encoder, decoder)
  opt = torch.optim.Adam(model.parameters(), 1e-3)
  x = torch.rand(batch_size, 1, 28, 28)

  def step():
    inputs = (x + noise_std * torch.randn_like(x)).clamp(0, 1) if noise_std else x
    loss = F.binary_cross_entropy_with_logits(model(inputs), x)
    opt.zero_grad()
    loss.backward()
    opt.step()

  return _images_per_s(step, batch_size, steps, repeats)


@_register('autoencoder')
def _autoencoder(batch_size, steps, repeats):
  return _time_autoencoder((16, 8, 8), (8, 8, 16), 0.0, batch_size, steps, repeats)


@_register('denoising_autoencoder')
def _denoising_autoencoder(batch_size, steps, repeats):
  return _time_autoencoder((32, 32, 16), (16, 32, 32), 0.5, batch_size, steps, repeats)


def _images_per_s(step, batch_size, steps, repeats):
  for _ in range(3):
    step()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    times.append(time.perf_counter() - start)
  return batch_size * steps / sorted(times)[len(times) // 2]


def images_per_s(model: str, batch_size: int, steps: int, repeats: int) -> float:
  """Median training images/s of `model` in eager PyTorch on this machine's CPU."""
  if model not in _TIMERS:
    raise ValueError(f'No PyTorch reference for {model!r}; have {sorted(_TIMERS)}.')
  return _TIMERS[model](batch_size, steps, repeats)
