"""The training loop in-process: it learns on real digits, and the denoiser reports its baseline."""

import os

import pytest

from gan_aec.run import loop
from tests import helpers

import configs.autoencoder  # pylint: disable=g-bad-import-order
import configs.denoising_autoencoder

pytestmark = pytest.mark.slow  # Training runs to a number.


def _offline(config, tmp_path):
  config.dataset.download = False
  return config


def test_autoencoder_test_loss_falls_on_bundled_real_digits(tmp_path):
  config = _offline(configs.autoencoder.get_config('smoke'), tmp_path)
  config.batch_size = 64
  config.num_train_steps = 150
  config.eval_at_start = True
  config.eval_every_steps = 150
  config.log_every_steps = 50
  config.checkpoint_every_steps = 150
  workdir = str(tmp_path / 'run')
  final = loop.train_and_evaluate(config, workdir)
  evals = [r for r in helpers.read_metrics(workdir) if 'eval_loss' in r]
  assert [r['step'] for r in evals] == [0, 150]
  start, end = evals[0]['eval_loss'], evals[-1]['eval_loss']
  assert final['eval_loss'] == end
  # Untrained: ~0.69 nats per pixel; 150 Adam steps bring it below half of that.
  assert end < 0.5 * start, (start, end)
  assert evals[-1]['eval_psnr'] > evals[0]['eval_psnr'] + 5.0


def test_denoising_run_reports_the_noisy_input_baseline_and_figures(tmp_path):
  config = _offline(configs.denoising_autoencoder.get_config('smoke'), tmp_path)
  workdir = str(tmp_path / 'run')
  final = loop.train_and_evaluate(config, workdir)
  assert set(final) == {'eval_loss', 'eval_psnr', 'eval_input_psnr'}
  assert 8.5 < final['eval_input_psnr'] < 10.5  # Gaussian noise 0.5, clipped: about 9.4 dB.
  assert os.path.exists(os.path.join(workdir, 'figures', 'denoising.png'))
