"""Training speed of the PyTorch port on this machine, timed by \
`python -m gan_aec.benchmark --pytorch`.

  python -m pytorch_port.timing --model=vae --batch_size=16 --steps=10 --repeats=3 --threads=1

A user's alternative on the same CPU; timing it in the same run makes the speed ratio honest (CPU
speeds vary 30-45% between machines of one kind). The models, optimizers and batch sizes are our
configs' (pytorch_port.models); the batches are random images of the right shape.
`images_per_s_per_core` runs one single-threaded process per core side by side, the fastest way
to train several models at once with PyTorch here, and adds their images/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from pytorch_port import models


def _median_images_per_s(step, batch_size: int, steps: int, repeats: int) -> float:
  for _ in range(3):
    step()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    times.append(time.perf_counter() - start)
  return batch_size * steps / sorted(times)[len(times) // 2]


def _autoencoder_step(encoder, decoder, noise_std: float, batch_size: int):
  model = models.ConvAutoencoder(encoder, decoder)
  opt = torch.optim.Adam(model.parameters(), 1e-3)
  x = torch.rand(batch_size, 1, 28, 28)

  def step():
    inputs = (x + noise_std * torch.randn_like(x)).clamp(0, 1) if noise_std else x
    loss = F.binary_cross_entropy_with_logits(model(inputs), x)
    opt.zero_grad()
    loss.backward()
    opt.step()
  return step


def _vae_step(batch_size: int):
  model = models.ConvVAE()
  opt = torch.optim.RMSprop(model.parameters(), 1e-3, alpha=0.99)
  x = torch.rand(batch_size, 1, 28, 28)

  def step():
    logits, mean, logvar = model(x)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction='sum') / batch_size
    kl = 0.5 * (logvar.exp() + mean ** 2 - 1 - logvar).sum(1).mean()
    opt.zero_grad()
    (recon + kl).backward()
    opt.step()
  return step


def _dcgan_step(batch_size: int):
  g, d = models.Generator(), models.Discriminator()
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
  return step


STEPS = {
    'autoencoder': lambda b: _autoencoder_step((16, 8, 8), (8, 8, 16), 0.0, b),
    'denoising_autoencoder': lambda b: _autoencoder_step((32, 32, 16), (16, 32, 32), 0.5, b),
    'vae': _vae_step,
    'dcgan': _dcgan_step,
}


def images_per_s(model: str, batch_size: int, steps: int, repeats: int,
                 threads: int | None = None) -> float:
  """Median training images/s of `model` in eager PyTorch in this process (`threads` intra-op
  threads; default PyTorch's, every core)."""
  if model not in STEPS:
    raise ValueError(f'No PyTorch port of {model!r}; have {sorted(STEPS)}.')
  if threads:
    torch.set_num_threads(threads)
  return _median_images_per_s(STEPS[model](batch_size), batch_size, steps, repeats)


def images_per_s_per_core(model: str, batch_size: int, steps: int, repeats: int,
                          processes: int | None = None) -> float:
  """Total images/s of `processes` (default: one per core) single-threaded processes, each
  training its own `model` at the same time."""
  processes = processes or len(os.sched_getaffinity(0))
  command = [sys.executable, '-m', 'pytorch_port.timing', f'--model={model}',
             f'--batch_size={batch_size}', f'--steps={steps}', f'--repeats={repeats}',
             '--threads=1']
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, 'OMP_NUM_THREADS': '1'}
  running = [subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
  rates = []
  for process in running:
    out, _ = process.communicate()
    if process.returncode:
      raise RuntimeError(f'{" ".join(command)} failed with status {process.returncode}')
    rates.append(json.loads(out.strip().splitlines()[-1])['images_per_s'])
  return sum(rates)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', choices=sorted(STEPS), required=True)
  parser.add_argument('--batch_size', type=int, required=True)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--threads', type=int, default=None)
  args = parser.parse_args(argv)
  rate = images_per_s(args.model, args.batch_size, args.steps, args.repeats, args.threads)
  print(json.dumps({'model': args.model, 'batch_size': args.batch_size, 'threads': args.threads,
                    'images_per_s': rate}))


if __name__ == '__main__':
  main()
