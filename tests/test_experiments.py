"""An experiment script end to end in --quick mode under mock data, and the results page."""

import dataclasses
import json
import math
import os

import tensorflow_datasets as tfds

from experiments import autoencoder_mnist, results_page
import pytest

from gan_aec.data import mnist

pytestmark = pytest.mark.slow  # An experiment script end to end.


def test_quick_autoencoder_experiment_writes_results_and_page(tmp_path, monkeypatch):
  monkeypatch.setattr(mnist, 'can_reach_download_server', lambda *a, **k: True)
  results = tmp_path / 'results'
  with tfds.testing.mock_data(num_examples=400):
    summary = autoencoder_mnist.main(autoencoder_mnist.EXPERIMENT, [
        '--quick', f'--data_dir={tmp_path / "tfds"}', f'--runs_dir={tmp_path / "runs"}',
        f'--results_dir={results}', '--data_note=mock data'])
  out = results / 'autoencoder_mnist'
  with open(out / 'summary.json', encoding='utf-8') as f:
    assert json.load(f) == summary
  assert summary['mode'] == 'quick' and summary['steps'] == 200
  assert summary['data']['source'] == 'tfds' and summary['data']['test_examples'] == 400
  assert math.isfinite(summary['metrics']['eval_loss']) and 'loss' in summary['metrics']
  assert summary['full_mode']['steps'] == 6000 and summary['full_mode']['estimated_minutes_here'] > 0
  assert summary['figures'] == ['reconstructions.png'] and (out / 'reconstructions.png').exists()
  assert '--config.num_train_steps=200' in summary['train_command']

  page = (results / 'README.md').read_text()
  assert '## Convolutional autoencoder on MNIST' in page
  assert '![reconstructions.png](autoencoder_mnist/reconstructions.png)' in page
  assert results_page._fmt(summary['metrics']['eval_loss']) in page
  assert f"| `loss` | {results_page._fmt(summary['metrics']['loss'])} | 0.097 |" in page
  assert 'mock data' in page and 'Original report: training loss about 0.097' in page
  os.remove(results / 'README.md')
  assert results_page.write(str(results)) == str(results / 'README.md')
  assert (results / 'README.md').read_text() == page  # The page is a function of the summaries.


def test_a_many_seed_experiment_collects_the_first_seeds_figures(tmp_path):
  results = tmp_path / 'results'
  short = dataclasses.replace(autoencoder_mnist.EXPERIMENT, quick={  # A few steps suffice here.
      'num_train_steps': 10, 'eval_every_steps': 10, 'checkpoint_every_steps': 10,
      'log_every_steps': 5, 'batch_size': 16})
  summary = autoencoder_mnist.main(short, [
      '--quick', '--num_seeds=2', f'--data_dir={tmp_path / "empty_tfds"}',
      f'--runs_dir={tmp_path / "runs"}', f'--results_dir={results}'])
  assert summary['num_seeds'] == 2 and len(summary['metrics']['eval_loss_per_replica']) == 2
  assert summary['figures'] == ['reconstructions.png']
  assert (results / 'autoencoder_mnist' / 'reconstructions.png').exists()
