"""Feature extractors, sample metrics during training, and gan_aec.evaluate
(gan_aec.run.sample_quality, gan_aec.run.evaluation)."""

import json
import os

import chex
import numpy as np
import pytest

from gan_aec import errors
from gan_aec.data import mnist
from gan_aec.data.batching import to_float
from gan_aec.run import config as config_lib, evaluation, loop, sample_quality
from tests import helpers


@pytest.fixture(scope='module')
def digits():
  return mnist.load_bundled()


def test_extractor_specs_fail_with_instructions(tmp_path):
  with pytest.raises(errors.ExtractorError, match='configs/mnist_classifier.py'):
    sample_quality.load_extractor(str(tmp_path))
  with pytest.raises(errors.ExtractorError, match='PYTHONPATH'):
    sample_quality.load_extractor('python:no_such_module_xyz:embed')
  with pytest.raises(errors.ExtractorError, match='python:package.module:function'):
    sample_quality.load_extractor('python:tests.helpers')
  assert issubclass(errors.ExtractorError, errors.UserError)


def test_user_supplied_extractor_and_cached_real_features(tmp_path, digits, monkeypatch):
  extractor = sample_quality.load_extractor('python:tests.helpers:pooled_pixels_extractor')
  assert extractor.description.endswith('version v1')
  features, logits = extractor(digits.test.images[:3])  # uint8 in, scaled to [0, 1].
  chex.assert_shape(features, (3, 49))
  assert logits is None and 0.0 <= features.min() and features.max() <= 1.0

  calls = []
  counting = sample_quality.FeatureExtractor(
      extractor.description, lambda x: calls.append(len(x)) or extractor.embed(x), batch_size=100)
  quality = sample_quality.SampleQuality(counting, digits.test, 300, str(tmp_path), 'mnist-test')
  assert quality.num_samples == 300 and sum(calls) == 300
  again = sample_quality.SampleQuality(counting, digits.test, 300, str(tmp_path), 'mnist-test')
  assert sum(calls) == 300  # Read from the cache.
  np.testing.assert_array_equal(again.real_features, quality.real_features)
  assert len(os.listdir(tmp_path)) == 1
  capped = sample_quality.SampleQuality(counting, digits.test, 10 ** 6, None, 'mnist-test')
  assert capped.num_samples == len(digits.test)  # N is at most the split.

  scores = quality.evaluate(to_float(digits.train.images[:300]))
  assert 'classes_covered' not in scores  # No logits, no class statistics.
  assert scores['fid'] < quality.evaluate(np.random.default_rng(0).uniform(
      size=(300, 28, 28, 1)).astype(np.float32))['fid']


@pytest.mark.slow
def test_training_logs_sample_metrics_keeps_the_best_and_evaluate_matches(tmp_path, monkeypatch):
  monkeypatch.setattr(mnist, 'can_reach_download_server', lambda *a, **k: False)
  cache_dir = str(tmp_path / 'cache')  # No data dir, offline: the bundled digits.
  classifier_dir = str(tmp_path / 'classifier')
  config = config_lib.load_config('mnist_classifier', 'smoke')
  loop.train_and_evaluate(config, classifier_dir)
  assert os.path.exists(os.path.join(classifier_dir, 'figures', 'confusion_matrix.png'))

  config = config_lib.load_config('vae', 'smoke')
  config.dataset.cache_dir = cache_dir
  config.sample_metrics.extractor = classifier_dir
  config.sample_metrics.num_samples = 200
  config.eval_at_start = True  # Two evaluations, to keep the better one.
  workdir = str(tmp_path / 'vae')
  final = loop.train_and_evaluate(config, workdir)
  for name in sample_quality.SCALARS:
    assert np.isfinite(final[f'eval_{name}']), name
  logged = {r['step']: r['eval_fid'] for r in helpers.read_metrics(workdir) if 'eval_fid' in r}
  assert sorted(logged) == [0, 4]
  best_step = min(logged, key=logged.get)
  assert os.listdir(os.path.join(workdir, 'best_checkpoint')) == [str(best_step)]
  assert os.listdir(cache_dir)  # Real features cached.

  record = evaluation.evaluate_checkpoints(workdir, checkpoint='best', references=True)
  best = record['best']
  assert best['step'] == best_step and best['num_samples'] == 200 and best['split'] == 'test'
  # Named by what it computes (a hash of its weights and its step), not by where it lies.
  assert best['extractor'].startswith('mnist classifier ')
  assert classifier_dir not in best['extractor']
  np.testing.assert_allclose(best['fid'], logged[best_step], rtol=1e-4)  # Same samples.
  assert sum(best['class_histogram']) == 200
  refs = record['references']
  assert refs['real_train_images']['fid'] < refs['uniform_noise']['fid']
  assert refs['one_repeated_image']['classes_covered'] == 1
  assert refs['one_repeated_image']['recall'] == 0.0
  with open(os.path.join(workdir, 'eval.json'), encoding='utf-8') as f:
    assert json.load(f) == record

  with pytest.raises(errors.UserError, match='does not generate samples'):
    evaluation.evaluate_checkpoints(classifier_dir)
