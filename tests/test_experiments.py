"""The experiment scripts and the results page: an experiment end to end in --quick mode under mock
data, and the committed results: unedited, current with the configs, and what the page shows."""

import dataclasses
import importlib
import json
import math
import os
import sys
import types

import pytest
import tensorflow_datasets as tfds

from experiments import autoencoder_mnist, calibration, common, results_page
from gan_aec.data import mnist
from gan_aec.run import config as config_lib, workdir as run_workdir
import pytorch_port

RESULTS = os.path.join(common.REPO, 'experiments', 'results')
# Fields that do not change a run's numbers: where the data lie, how often it logs or saves.
NOT_COMPARED = (run_workdir.RESUMABLE_FIELDS - {'num_train_steps', 'eval_every_steps'})


def _flat(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = list(value) if isinstance(value, tuple) else value
  return out


def _args_of(summary):
  argv = summary['script'].split()[3:]  # After `python -m experiments.<name>`.
  argv = [a.replace(common.DATA_DIR_PLACEHOLDER, '/a/data/dir') for a in argv]
  return common.parse_args(argv)


def test_the_committed_results_are_unedited_current_and_on_the_page():
  summaries = results_page.read_summaries(RESULTS)
  assert {'calibration', 'autoencoder_mnist', 'denoising_autoencoder_mnist', 'vae_mnist',
          'dcgan_mnist', 'mnist_classifier'} <= set(summaries)
  for name, summary in summaries.items():
    assert common.digest(summary) == summary['digest'], f'{name}/summary.json was edited'
    if summary.get('kind') == 'calibration':
      continue
    experiment = importlib.import_module(f'experiments.{name}').EXPERIMENT
    config, _ = common.build_config(experiment, _args_of(summary))
    expected = _flat(json.loads(config.to_json_best_effort()))
    committed = _flat(summary['config'])
    stale = sorted(k for k in set(expected) | set(committed)
                   if k not in NOT_COMPARED and expected.get(k) != committed.get(k))
    assert not stale, (f'{name}: the committed results were made with another config '
                       f'({[(k, committed.get(k), expected.get(k)) for k in stale]}); re-run '
                       f'`{summary["script"]}`.')
  with open(os.path.join(RESULTS, 'README.md'), encoding='utf-8') as f:
    assert f.read() == results_page.render(summaries), (
        'experiments/results/README.md is not what the summaries give: '
        'python experiments/results_page.py')


def test_differences_carry_the_standard_error_of_two_means():
  ours = {'m': 10.0, 'm_std': 2.0, 'x': 1.0}
  theirs = {'m': 9.0, 'm_std': 1.0, 'x': 1.0}
  out = common.differences(ours, theirs, ('m', 'x', 'missing'), 8, 4)
  assert out['m']['difference'] == 1.0
  assert out['m']['standard_error'] == pytest.approx(math.sqrt(4 / 8 + 1 / 4))
  assert out['x'] == {'difference': 0.0, 'standard_error': 0.0} and 'missing' not in out


def test_the_page_interval_is_welchs_t_interval():
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for n1, n2 in ((8, 4), (4, 2), (2, 2)):
    a, b = rng.normal(10, 2, n1), rng.normal(9, 1, n2)
    ours = {'m': a.mean(), 'm_std': a.std(ddof=1)}
    theirs = {'m': b.mean(), 'm_std': b.std(ddof=1)}
    want = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert results_page.interval_95(ours, n1, theirs, n2, 'm') == pytest.approx(
        (want.low, want.high), rel=1e-9)
  # No spread on either side: the difference itself.
  assert results_page.interval_95({'m': 2.0}, 4, {'m': 1.5}, 2, 'm') == (0.5, 0.5)


def test_a_hand_edit_changes_the_digest():
  summary = {'name': 'x', 'metrics': {'eval_loss': 0.1}}
  summary['digest'] = common.digest(summary)
  assert common.digest(summary) == summary['digest']
  summary['metrics']['eval_loss'] = 0.09
  assert common.digest(summary) != summary['digest']


def test_the_standard_protocol_is_what_the_page_says():
  from experiments import dcgan_mnist, denoising_autoencoder_mnist, vae_mnist  # pylint: disable=g-import-not-at-top
  budgets = {e.name: (e.standard.get('num_train_steps'), e.standard_seeds, e.pytorch_seeds)
             for e in (autoencoder_mnist.EXPERIMENT, denoising_autoencoder_mnist.EXPERIMENT,
                       vae_mnist.EXPERIMENT, dcgan_mnist.EXPERIMENT)}
  assert budgets == {'autoencoder_mnist': (2000, 8, 4), 'denoising_autoencoder_mnist': (2000, 4, 4),
                     'vae_mnist': (3000, 8, 4), 'dcgan_mnist': (2000, 4, 2)}
  config, _ = common.build_config(vae_mnist.EXPERIMENT, common.parse_args([]))
  assert config.num_seeds == 8 and config.num_train_steps == 3000
  full, _ = common.build_config(vae_mnist.EXPERIMENT, common.parse_args(['--full']))
  assert full.num_seeds == 1
  assert full.num_train_steps == config_lib.load_config('vae').num_train_steps


def test_calibration_reads_more_damage_as_a_larger_distance():
  """FID and KID in mnist-clf-v1 grow with the strength of each kind of damage (N = 300)."""
  from gan_aec.run import sample_quality  # pylint: disable=g-import-not-at-top
  data = mnist.load_bundled()
  extractor = sample_quality.load_extractor('mnist-clf-v1')
  num = 300
  real = extractor(data.test.images[:num])[0]
  other = data.test.images[num:2 * num].astype('float32') / 255.0

  def scores(images):
    out = sample_quality.compute(real, extractor(images)[0])
    return out['fid'], out['kid']
  floor = scores(other)
  for damaged in ([calibration.noised(other, s) for s in (0.1, 0.4)],
                  [calibration.blurred(other, s) for s in (0.75, 2.0)],
                  [calibration.without_classes(data.train, k, num) for k in (0, 5)]):
    weak, strong = scores(damaged[0]), scores(damaged[1])
    assert strong[0] > weak[0] and strong[1] > weak[1], (weak, strong)
    assert weak[0] > floor[0]


def test_calibration_names_each_column_that_does_not_grow_with_the_damage():
  def row(what, strength, fid, kid):
    return {'what': what, 'strength': strength, 'fid': {'a': fid}, 'kid': {'a': kid}}
  rows = [row('test digits (the other half)', '0', 1, 1),
          row('test digits (the other half) + Gaussian noise', 'std 0.1', 2, 0.5),
          row('test digits (the other half), Gaussian blur', '1 px', 3, 3),
          row('training digits', 'all classes', 1, 1),
          row('training digits without the first k classes', 'k = 1', 5, 5),
          row('training digits without the first k classes', 'k = 2', 4, 6)]
  assert calibration.out_of_order(rows) == [
      'KID in a: test digits (the other half) + Gaussian noise, std 0.1 (0.5) below 0 (1)',
      'FID in a: training digits without the first k classes, k = 2 (4) below k = 1 (5)']
  assert calibration.out_of_order(rows[:1] + rows[2:5]) == []


def test_the_page_says_when_fid_and_kid_rank_samples_on_opposite_sides_of_noise():
  def evaluation(fid, kid):
    return {'latest': {'fid': fid, 'kid': kid},
            'references': {'uniform_noise': {'fid': 2000.0, 'kid': 1000.0}}}
  sentence = results_page._disagreements(evaluation(1500.0, 1100.0))
  assert sentence[0].startswith('KID ranks the latest samples below uniform noise (1100 vs 1000)')
  assert 'FID ranks them above it (1500 vs 2000)' in sentence[0]
  assert results_page._disagreements(evaluation(2500.0, 900.0))[0].startswith('FID ranks')
  assert results_page._disagreements(evaluation(1500.0, 900.0)) == []  # Both: better than noise.
  assert results_page._disagreements(evaluation(2500.0, 1100.0)) == []  # Both: worse.


def test_the_full_mode_estimate_scales_the_wall_time_of_all_the_seeds_trained():
  summary = {'full_mode': {'steps': 6000, 'batch_size': 200}, 'num_seeds': 8,
             'train_wall_s': 1554.0, 'steps': 2000, 'batch_size': 200}
  assert results_page._full_mode_estimate(summary) == (
      ', about 78 min for these 8 seeds in one program on this machine at this run\'s speed')
  one = {**summary, 'num_seeds': 1, 'train_wall_s': 36.0, 'steps': 200}
  assert results_page._full_mode_estimate(one).startswith(', about 18 min for one seed ')


def test_the_classifier_experiment_says_whether_it_trained_the_shipped_weights(monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  from experiments import mnist_classifier  # pylint: disable=g-import-not-at-top
  from gan_aec.classifier import shipped  # pylint: disable=g-import-not-at-top
  params = shipped.load()[1]
  monkeypatch.setattr(mnist_classifier, '_latest_params', lambda workdir: params)
  same = mnist_classifier.network('RUN')
  assert same == {'trained': f'sha256:{shipped.DIGEST}',
                  'shipped': f'mnist-clf-v1 sha256:{shipped.DIGEST}', 'same': True}
  moved = jax.tree.map(lambda x: x + 1e-6, params)
  monkeypatch.setattr(mnist_classifier, '_latest_params', lambda workdir: moved)
  other = mnist_classifier.network('RUN')
  assert not other['same'] and other['trained'] != same['trained']
  summary = results_page.read_summaries(RESULTS)['mnist_classifier']
  for network, words in ((same, 'the same weights'), (other, 'other weights')):
    assert words in '\n'.join(results_page.section({**summary, 'network': network}))


def test_training_time_sums_each_attempt_from_its_start_to_its_last_record():
  records = [{'event': 'run_start', 'step': 0, 'code': 'a', 'wall_time': 100.0},
             {'step': 10, 'wall_time': 160.0},
             {'event': 'run_start', 'step': 10},  # No wall time: timed from its first record.
             {'step': 20, 'wall_time': 1000.0}, {'step': 30, 'wall_time': 1030.0}]
  assert common.training(records) == {'code': ['a'], 'attempts': 2, 'wall_s': 90.0}


def test_blur_keeps_the_mean_brightness_and_noise_stays_in_range():
  images = mnist.load_bundled().test.images[:20].astype('float32') / 255.0
  blurred = calibration.blurred(images, 1.5)
  assert blurred.shape == images.shape and abs(blurred.mean() - images.mean()) < 0.02
  assert blurred.max() < images.max()
  noisy = calibration.noised(images, 0.5)
  assert noisy.min() >= 0 and noisy.max() <= 1 and abs(noisy - images).mean() > 0.1


@pytest.mark.slow
def test_quick_autoencoder_experiment_writes_results_and_page(tmp_path, monkeypatch):
  monkeypatch.setattr(mnist, 'can_reach_download_server', lambda *a, **k: True)
  results = tmp_path / 'results'
  short = dataclasses.replace(autoencoder_mnist.EXPERIMENT, quick={  # The quick mode, shorter.
      **autoencoder_mnist.EXPERIMENT.quick, 'num_train_steps': 20, 'eval_every_steps': 10,
      'checkpoint_every_steps': 10, 'log_every_steps': 5})
  with tfds.testing.mock_data(num_examples=400):
    summary = autoencoder_mnist.main(short, [
        '--quick', f'--data_dir={tmp_path / "tfds"}', f'--runs_dir={tmp_path / "runs"}',
        f'--results_dir={results}', '--data_note=mock data'])
  out = results / 'autoencoder_mnist'
  with open(out / 'summary.json', encoding='utf-8') as f:
    assert json.load(f) == summary
  assert common.digest(summary) == summary['digest']
  assert summary['mode'] == 'quick' and summary['steps'] == 20 and summary['num_seeds'] == 1
  assert summary['data']['source'] == 'tfds' and summary['data']['test_examples'] == 400
  assert summary['config']['dataset']['data_dir'] == '<data_dir>'  # No path of this machine.
  assert summary['code'] and all(c.startswith('0.') for c in summary['code'])
  assert summary['train_wall_s'] > 0
  assert math.isfinite(summary['metrics']['eval_loss']) and 'loss' in summary['metrics']
  assert summary['full_mode']['steps'] == 6000
  assert summary['figures'] == ['reconstructions.png'] and (out / 'reconstructions.png').exists()
  assert '--config.num_train_steps=20 ' in summary['train_command']

  page = (results / 'README.md').read_text()
  assert '## Convolutional autoencoder on MNIST' in page
  assert '![reconstructions.png](autoencoder_mnist/reconstructions.png)' in page
  assert f"| `loss` | {results_page._fmt(summary['metrics']['loss'])} | 0.097 |" in page
  assert 'mock data' in page and 'Original report: training loss about 0.097' in page
  assert 'full mode (`--full`): 6,000 steps of batch 200, about ' in page
  os.remove(results / 'README.md')
  assert results_page.write(str(results)) == str(results / 'README.md')
  assert (results / 'README.md').read_text() == page  # The page is a function of the summaries.


@pytest.mark.slow
def test_a_many_seed_experiment_with_pytorch_rows(tmp_path, monkeypatch):
  calls = []

  def fake_port(model, seed, steps):  # The port's own test checks its training; here the rows.
    calls.append(seed)
    return {'model': model, 'seed': seed, 'steps': steps, 'eval_loss': 0.2 + 0.01 * seed,
            'eval_psnr': 14.0, 'train_wall_s': 1.0}
  # The port in place of pytorch_port.train, which needs torch (not part of the test install).
  port = types.ModuleType('pytorch_port.train')
  port.train_seed, port.VERSION = fake_port, 2
  monkeypatch.setitem(sys.modules, 'pytorch_port.train', port)
  monkeypatch.setattr(pytorch_port, 'train', port, raising=False)
  results = tmp_path / 'results'
  short = dataclasses.replace(autoencoder_mnist.EXPERIMENT, quick={  # A few steps suffice here.
      'num_train_steps': 10, 'eval_every_steps': 10, 'checkpoint_every_steps': 10,
      'log_every_steps': 5, 'batch_size': 16}, pytorch_seeds=3)
  argv = ['--quick', '--num_seeds=2', '--pytorch', f'--runs_dir={tmp_path / "runs"}',
          f'--results_dir={results}']
  summary = autoencoder_mnist.main(short, argv)
  assert summary['num_seeds'] == 2 and len(summary['metrics']['eval_loss_per_replica']) == 2
  assert summary['figures'] == ['reconstructions.png']
  assert (results / 'autoencoder_mnist' / 'reconstructions.png').exists()
  torch_rows = summary['pytorch']
  assert calls == [0, 1, 2] and torch_rows['finished'] == 3
  assert torch_rows['metrics']['eval_loss'] == pytest.approx(0.21)
  assert torch_rows['command'].endswith('--model=autoencoder --seeds=0-2 --steps=10')
  assert summary['differences']['eval_loss']['difference'] == pytest.approx(
      summary['metrics']['eval_loss'] - 0.21)
  page = (results / 'README.md').read_text()
  assert '| eager PyTorch, 3 seeds | ours − PyTorch ± standard error (95% interval) |' in page
  low, high = results_page.interval_95(summary['metrics'], 2, torch_rows['metrics'], 3,
                                       'eval_loss')
  assert low < summary['differences']['eval_loss']['difference'] < high
  assert f'({results_page._fmt(low)} to {results_page._fmt(high)})' in page
