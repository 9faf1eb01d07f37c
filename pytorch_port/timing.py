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


class _ConvVAE(nn.Module):
  """configs/vae.py's model: the seed's encoder and decoder, latent 2."""

  def __init__(self, latent_dim=2):
    super().__init__()
    self.encoder = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Linear(14 * 14 * 64, 32), nn.ReLU())
    self.mean, self.logvar = nn.Linear(32, latent_dim), nn.Linear(32, latent_dim)
    self.decoder_dense = nn.Linear(latent_dim, 14 * 14 * 64)
    self.deconv = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)
    self.logits = nn.Conv2d(32, 1, 3, padding=1)

  def forward(self, x):
    h = self.encoder(x)
    mean, logvar = self.mean(h), self.logvar(h)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    d = F.relu(self.decoder_dense(z)).view(-1, 64, 14, 14)
    return self.logits(F.relu(self.deconv(d))), mean, logvar


@_register('vae')
def _vae(batch_size, steps, repeats):
  model = _ConvVAE()
  opt = torch.optim.RMSprop(model.parameters(), 1e-3)
  x = torch.rand(batch_size, 1, 28, 28)

  def step():
    logits, mean, logvar = model(x)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction='sum') / batch_size
    kl = 0.5 * (logvar.exp() + mean ** 2 - 1 - logvar).sum(1).mean()
    opt.zero_grad()
    (recon + kl).backward()
    opt.step()

  return _images_per_s(step, batch_size, steps, repeats)


class _Generator(nn.Module):
  """The seed's generator at 28x28 (as configs/dcgan.py)."""

  def __init__(self):
    super().__init__()
    self.dense = nn.Linear(100, 4 * 4 * 512)
    self.bn0, self.bn1, self.bn2 = nn.BatchNorm2d(512), nn.BatchNorm2d(256), nn.BatchNorm2d(128)
    self.deconv1 = nn.ConvTranspose2d(512, 256, 5, 2, padding=2, output_padding=1)
    self.deconv2 = nn.ConvTranspose2d(256, 128, 5, 2, padding=2, output_padding=1)
    self.deconv3 = nn.ConvTranspose2d(128, 1, 5, 2, padding=2, output_padding=1)

  def forward(self, z):
    act = lambda x, bn: F.dropout(F.leaky_relu(bn(x), 0.2), 0.1, self.training)
    x = act(self.dense(z).view(-1, 512, 4, 4), self.bn0)
    x = F.interpolate(self.deconv1(x), size=(7, 7), mode='nearest')
    x = act(x, self.bn1)
    x = act(self.deconv2(x), self.bn2)
    return torch.tanh(self.deconv3(x))


class _Discriminator(nn.Module):

  def __init__(self):
    super().__init__()
    self.convs = nn.ModuleList([nn.Conv2d(1, 64, 5, 2, 2), nn.Conv2d(64, 128, 5, 2, 2),
                                nn.Conv2d(128, 256, 5, 2, 2)])
    self.bns = nn.ModuleList([nn.Identity(), nn.BatchNorm2d(128), nn.BatchNorm2d(256)])
    self.dense = nn.Linear(4 * 4 * 256, 1)

  def forward(self, x):
    for conv, bn in zip(self.convs, self.bns):
      x = F.dropout(F.leaky_relu(bn(conv(x)), 0.2), 0.1, self.training)
    return self.dense(x.flatten(1))[:, 0]


@_register('dcgan')
def _dcgan(batch_size, steps, repeats):
  g, d = _Generator(), _Discriminator()
  g_opt = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
  d_opt = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
  x = torch.rand(batch_size, 1, 28, 28) * 2 - 1
  bce = F.binary_cross_entropy_with_logits

  def step():
    # One generator forward serves both updates, as in gan_aec.dcgan.train_step.
    fake = g(torch.rand(batch_size, 100) * 2 - 1)
    real_logits, fake_logits = d(x), d(fake.detach())
    d_loss = (bce(real_logits, torch.full_like(real_logits, 0.9))
              + bce(fake_logits, torch.zeros_like(fake_logits)))
    d_opt.zero_grad()
    d_loss.backward()
    d_opt.step()
    g_logits = d(fake)
    g_loss = bce(g_logits, torch.ones_like(g_logits))
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()

  return _images_per_s(step, batch_size, steps, repeats)
