r"""Trains gan_aec's models in eager PyTorch on the same digits, in the same batch order, and
scores them with the same test metrics: the reference our numbers are compared with.

  python -m pytorch_port.train --model=vae --seeds=0-3 --steps=3000
  python -m pytorch_port.train --model=denoising_autoencoder --seeds=0-7 --steps=2000 \
      --json=out.jsonl
  python -m pytorch_port.train --model=dcgan --seeds=0-1 --steps=2000

Data: the MNIST digits gan_aec trains on when it has no TFDS copy (the bundled 8,000 train / 2,000
test split), batched by gan_aec's own input pipeline with the seed of each run, so both
implementations see the same images in the same order. Hyperparameters: each model's gan_aec
config (configs/<model>.py). Optimizers: PyTorch's Adam (optax's update); the VAE's RMSprop as
optax computes it (`OptaxRMSprop`: bias-corrected, eps inside the square root, which
torch.optim.RMSprop cannot express). Initialisation: the one each of our models uses
(`networks`: the config's kernel_init, the DCGAN's Glorot-uniform), zero biases as ours. Each
piece is tested against ours (tests/test_pytorch_port.py). The DCGAN's samples are scored like
ours: N of them against the first N test digits in the features of mnist-clf-v1, the network
shipped in gan_aec.
Prints one line per seed, then the mean and standard deviation of each test metric.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

from gan_aec.data import batching, mnist
from gan_aec.run import config as config_lib, startup, tasks
from pytorch_port import models

MODELS = ('autoencoder', 'denoising_autoencoder', 'vae', 'dcgan')
DCGAN_KERNEL_INIT = 'glorot_uniform'  # gan_aec.dcgan.model's kernels (the report's Xavier).
# Raise it with any change that can move what the port trains: a record of another version (in a
# --json file, or an experiment's kept seeds) is of another model and is trained again.
# 1: the DCGAN's kernels LeCun-normal; the VAE's biases PyTorch's default and its optimizer
# torch.optim.RMSprop (no bias correction, eps outside the square root).
VERSION = 2


def _seeds(text: str) -> list[int]:
  seeds = []
  for part in text.split(','):
    low, _, high = part.partition('-')
    seeds += list(range(int(low), int(high or low) + 1))
  return seeds


def networks(model: str, config) -> dict[str, torch.nn.Module]:
  """The model's networks at initialisation, as our model initialises them from `config`
  ({'model': ...}, or the DCGAN's {'generator': ..., 'discriminator': ...}); draws from torch's
  global generator."""
  if model == 'dcgan':
    return {'generator': models.initialize(models.Generator(config.latent_dim), DCGAN_KERNEL_INIT),
            'discriminator': models.initialize(models.Discriminator(), DCGAN_KERNEL_INIT)}
  if model == 'vae':
    return {'model': models.initialize(models.ConvVAE(config.latent_dim), config.kernel_init)}
  return {'model': models.initialize(models.ConvAutoencoder(tuple(config.encoder_features),
                                                            tuple(config.decoder_features)),
                                     config.kernel_init)}


class OptaxRMSprop(torch.optim.Optimizer):
  """optax.rmsprop(lr, decay, eps, bias_correction=...) in torch: nu <- decay * nu + (1 - decay)
  * g^2; p <- p - lr * g / sqrt(nu_hat + eps), nu_hat = nu / (1 - decay^t) with bias correction."""

  def __init__(self, params, lr: float, decay: float, eps: float = 1e-8,
               bias_correction: bool = False):
    super().__init__(params, {'lr': lr, 'decay': decay, 'eps': eps,
                              'bias_correction': bias_correction})

  @torch.no_grad()
  def step(self, closure=None):
    del closure
    for group in self.param_groups:
      decay = group['decay']
      for p in group['params']:
        if p.grad is None:
          continue
        state = self.state[p]
        if not state:
          state['count'], state['nu'] = 0, torch.zeros_like(p)
        state['count'] += 1
        nu = state['nu'].mul_(decay).addcmul_(p.grad, p.grad, value=1 - decay)
        nu_hat = nu / (1 - decay ** state['count']) if group['bias_correction'] else nu
        p.sub_(group['lr'] * p.grad * torch.rsqrt(nu_hat + group['eps']))


def _autoencoder_run(config, data, seed: int, steps: int) -> dict[str, float]:
  model = networks('autoencoder', config)['model']
  opt = torch.optim.Adam(model.parameters(), config.learning_rate)
  batches = batching.TrainBatches(data.train, config.batch_size, seed)
  noise_std = float(config.noise_std)

  def corrupt(x):
    return (x + noise_std * torch.randn_like(x)).clamp(0, 1) if noise_std else x

  for step in range(steps):
    x = models.to_nchw(batches.get(step)['image'])
    loss = F.binary_cross_entropy_with_logits(model(corrupt(x)), x)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if not math.isfinite(loss.item()):
      return {'diverged_at_step': step}
  model.eval()
  x = models.to_nchw(batching.to_float(data.test.images))
  with torch.no_grad():
    inputs = corrupt(x)
    logits = model(inputs)
    mse = ((torch.sigmoid(logits) - x) ** 2).flatten(1).mean(1)
    out = {'eval_loss': float(F.binary_cross_entropy_with_logits(logits, x)),
           'eval_psnr': float((-10 * torch.log10(mse.clamp_min(1e-10))).mean())}
    if noise_std:
      input_mse = ((inputs - x) ** 2).flatten(1).mean(1)
      out['eval_input_psnr'] = float((-10 * torch.log10(input_mse.clamp_min(1e-10))).mean())
  return out


def _vae_parts(model, x, eps=None):
  logits, mean, logvar = model(x, eps)
  recon = F.binary_cross_entropy_with_logits(logits, x, reduction='none').flatten(1).sum(1)
  kl = 0.5 * (logvar.exp() + mean ** 2 - 1 - logvar).sum(1)
  return recon, kl


def _iwae_nll(model, x, num_samples: int, per_pass: int = 50) -> torch.Tensor:
  mean, logvar = model.encode(x)
  log_w = []
  for start in range(0, num_samples, per_pass):
    k = min(per_pass, num_samples - start)
    eps = torch.randn(k, *mean.shape)
    z = mean + torch.exp(0.5 * logvar) * eps  # [K, B, L]
    logits = model.decode(z.flatten(0, 1)).view(k, *x.shape)
    log_px = -F.binary_cross_entropy_with_logits(
        logits, x.expand(k, *x.shape), reduction='none').flatten(2).sum(2)
    log_pz = -0.5 * (math.log(2 * math.pi) + z ** 2).sum(2)
    log_qz = -0.5 * (math.log(2 * math.pi) + logvar + (z - mean) ** 2 / logvar.exp()).sum(2)
    log_w.append(log_px + log_pz - log_qz)
  log_w = torch.cat(log_w)
  return -(torch.logsumexp(log_w, 0) - math.log(num_samples))


def _vae_run(config, data, seed: int, steps: int) -> dict[str, float]:
  model = networks('vae', config)['model']
  opt = OptaxRMSprop(model.parameters(), config.learning_rate, config.rmsprop_decay,
                     bias_correction=config.get('rmsprop_bias_correction', False))
  batches = batching.TrainBatches(data.train, config.batch_size, seed)
  for step in range(steps):
    x = models.to_nchw(batches.get(step)['image'])
    recon, kl = _vae_parts(model, x)
    loss = (recon + config.beta * kl).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if not math.isfinite(loss.item()):
      return {'diverged_at_step': step}
  x = models.to_nchw(batching.to_float(data.test.images))
  with torch.no_grad():
    recon, kl = _vae_parts(model, x)
    iwae = torch.cat([_iwae_nll(model, x[i:i + 500], config.eval.num_importance_samples)
                      for i in range(0, len(x), 500)])
  return {'eval_neg_elbo': float((recon + kl).mean()), 'eval_recon': float(recon.mean()),
          'eval_kl': float(kl.mean()), 'eval_iwae_nll': float(iwae.mean())}


def dcgan_step(generator, discriminator, opt_g, opt_d, x: torch.Tensor, z: torch.Tensor,
               real_label: float) -> tuple[float, float]:
  """One simultaneous update of both networks from one forward pass, as gan_aec.dcgan.train_step
  with the non-saturating loss: real images x [B, C, H, W] in [-1, 1], latents z [B, L]; returns
  (d_loss, g_loss) before the update."""
  def bce(logits, target):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

  fake = generator(z)
  real_logits, fake_logits = discriminator(x), discriminator(fake)
  d_loss = bce(real_logits, real_label) + bce(fake_logits, 0.0)
  g_loss = bce(fake_logits, 1.0)
  d_grads = torch.autograd.grad(d_loss, list(discriminator.parameters()), retain_graph=True)
  g_grads = torch.autograd.grad(g_loss, list(generator.parameters()))
  for params, grads in ((discriminator.parameters(), d_grads), (generator.parameters(), g_grads)):
    for p, g in zip(params, grads):
      p.grad = g
  opt_d.step()
  opt_g.step()
  return d_loss.item(), g_loss.item()


def _dcgan_run(config, data, seed: int, steps: int) -> dict[str, float]:
  """The report's DCGAN: simultaneous Adam updates of both networks from one forward pass (as
  gan_aec.dcgan.train_step), then its samples scored with the shipped feature network."""
  generator, discriminator = networks('dcgan', config).values()
  betas = (config.adam_beta1, 0.999)
  opt_g = torch.optim.Adam(generator.parameters(), config.learning_rate, betas=betas)
  opt_d = torch.optim.Adam(discriminator.parameters(), config.learning_rate, betas=betas)
  batches = batching.TrainBatches(data.train, config.batch_size, seed,
                                  value_range=batching.TANH_RANGE)

  def latents(n):
    return torch.rand(n, config.latent_dim) * 2 - 1  # Uniform[-1, 1], the report's prior.

  for step in range(steps):
    x = models.to_nchw(batches.get(step)['image'])
    d_loss, g_loss = dcgan_step(generator, discriminator, opt_g, opt_d, x, latents(len(x)),
                                config.real_label)
    if not math.isfinite(d_loss + g_loss):
      return {'diverged_at_step': step}
  generator.eval()
  from gan_aec.run import sample_quality  # pylint: disable=g-import-not-at-top
  quality = sample_quality.SampleQuality(sample_quality.from_shipped(), data.test,
                                         config.sample_metrics.num_samples, None, 'mnist')
  with torch.no_grad():
    samples = torch.cat([generator(latents(500)) for _ in range(-(-quality.num_samples // 500))])
  images = ((samples[:quality.num_samples].numpy().transpose(0, 2, 3, 1) + 1) / 2).clip(0, 1)
  scores = quality.evaluate(images.astype('float32'))
  return {'extractor': quality.extractor.description,
          **{f'eval_{k}': float(scores[k]) for k in sample_quality.SCALARS if k in scores}}


def train_seed(model: str, seed: int, steps: int, data=None) -> dict[str, float]:
  """Trains one seed of `model` (configs/<model>.py) for `steps` steps; its test metrics."""
  config = tasks.resolve_defaults(config_lib.load_config(model))  # E.g. the DCGAN's real_label.
  data = data or mnist.load_bundled()
  torch.manual_seed(seed)
  run = {'vae': _vae_run, 'dcgan': _dcgan_run}.get(model, _autoencoder_run)
  start = time.perf_counter()
  out = run(config, data, seed, steps)
  return {'model': model, 'seed': seed, 'steps': steps, 'port_version': VERSION,
          'code': startup.code_version(), **out,
          'train_wall_s': round(time.perf_counter() - start, 1)}


def summarize(records: list[dict]) -> dict[str, tuple[float, float, int]]:
  """{metric: (mean, std, n)} over the records that finished."""
  finished = [r for r in records if 'diverged_at_step' not in r]
  keys = sorted({k for r in finished for k in r if k.startswith('eval_')})
  return {k: (statistics.mean(r[k] for r in finished),
              statistics.stdev(r[k] for r in finished) if len(finished) > 1 else 0.0,
              len(finished)) for k in keys}


def main(argv: list[str] | None = None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', choices=MODELS, required=True)
  parser.add_argument('--seeds', default='0', help='e.g. 0-7 or 0,3,5')
  parser.add_argument('--steps', type=int, required=True)
  parser.add_argument('--threads', type=int, default=None, help='torch threads (default: all)')
  parser.add_argument('--json', default=None, help='append one JSON line per seed to this file')
  args = parser.parse_args(argv)
  if args.threads:
    torch.set_num_threads(args.threads)
  data = mnist.load_bundled()
  records = []
  for seed in _seeds(args.seeds):
    record = train_seed(args.model, seed, args.steps, data)
    records.append(record)
    print(json.dumps(record), flush=True)
    if args.json:
      with open(args.json, 'a', encoding='utf-8') as f:
        f.write(json.dumps(record) + '\n')
  for key, (mean, std, n) in summarize(records).items():
    print(f'{key}: {mean:.3f} +- {std:.3f} (n={n} of {len(records)})')
  return records


if __name__ == '__main__':
  main()
