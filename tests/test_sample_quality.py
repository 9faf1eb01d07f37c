"""The MNIST classifier, feature extractors, sample metrics during training, gan_aec.evaluate."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_aec import (classifier, config_lib, errors, evaluate, feature_extractor, mnist_data,
                     sample_quality, tasks, train)
from gan_aec.input_pipeline import to_float
from tests import helpers


@pytest.fixture(scope='module')
def digits():
  return mnist_data.load_bundled()


def test_random_shift_translates_each_image_within_bounds():
  images = jnp.zeros((16, 28, 28, 1)).at[:, 13, 13, 0].set(1.0)
  shifted = classifier.random_shift(images, jax.random.key(0), 2)
  chex.assert_shape(shifted, images.shape)
  np.testing.assert_array_equal(shifted.sum(axis=(1, 2, 3)), np.ones(16))  # Nothing lost...
  offsets = np.argwhere(np.asarray(shifted[..., 0]))[:, 1:] - 13
  assert np.abs(offsets).max() <= 2 and len({tuple(o) for o in offsets}) > 3  # ...and moved.
  assert classifier.random_shift(images, jax.random.key(0), 0) is images


def test_classifier_learns_the_bundled_digits(digits):
  config = config_lib.load_config('mnist_classifier', 'smoke')
  config.warmup_steps = 5
  config.num_train_steps = 60
  task = tasks.build_task(config)
  x, y = to_float(digits.train.images), digits.train.labels.astype(np.int32)
  state = task.create_state(jax.random.key(0), {'image': x[:1]})
  step = jax.jit(task.train_step)
  for i in range(60):
    idx = np.arange(i * 64, (i + 1) * 64)
    state, metrics = step(state, {'image': x[idx], 'label': y[idx]}, jax.random.key(i))
  sums = jax.jit(task.eval_step)(state, {'image': to_float(digits.test.images[:500]),
                                         'label': digits.test.labels[:500].astype(np.int32)},
                                 jax.random.key(0))
  assert float(sums['count']) == 500
  assert float(sums['accuracy']) / 500 > 0.85, sums  # 60 steps of 64 digits; chance is 0.1.
  features, logits = state.apply_fn({'params': state.params}, x[:4],
                                    method='features_and_logits')
  chex.assert_shape((features, logits), ((4, 128), (4, 10)))
  assert float(features.min()) >= 0.0  # Post-relu.
  with pytest.raises(ValueError, match='labelled MNIST'):
    config.dataset.name = 'celeb_a'
    tasks.build_task(config)


def test_extractor_specs_fail_with_instructions(tmp_path):
  with pytest.raises(feature_extractor.ExtractorError, match='configs/mnist_classifier.py'):
    feature_extractor.load(str(tmp_path))
  with pytest.raises(feature_extractor.ExtractorError, match='PYTHONPATH'):
    feature_extractor.load('python:no_such_module_xyz:embed')
  with pytest.raises(feature_extractor.ExtractorError, match='python:package.module:function'):
    feature_extractor.load('python:tests.helpers')
  assert issubclass(feature_extractor.ExtractorError, errors.UserError)


def test_user_supplied_extractor_and_cached_real_features(tmp_path, digits, monkeypatch):
  extractor = feature_extractor.load('python:tests.helpers:pooled_pixels_extractor')
  assert extractor.description.endswith('version v1')
  features, logits = extractor(digits.test.images[:3])  # uint8 in, scaled to [0, 1].
  chex.assert_shape(features, (3, 49))
  assert logits is None and 0.0 <= features.min() and features.max() <= 1.0

  calls = []
  counting = feature_extractor.FeatureExtractor(
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


def test_training_logs_sample_metrics_keeps_the_best_and_evaluate_matches(tmp_path, monkeypatch):
  monkeypatch.setattr(mnist_data, 'can_reach_download_server', lambda *a, **k: False)
  data_dir = str(tmp_path / 'tfds')  # Empty and offline: the bundled digits.
  classifier_dir = str(tmp_path / 'classifier')
  config = config_lib.load_config('mnist_classifier', 'smoke')
  config.dataset.data_dir = data_dir
  train.train_and_evaluate(config, classifier_dir)
  assert os.path.exists(os.path.join(classifier_dir, 'figures', 'confusion_matrix.png'))

  config = config_lib.load_config('vae', 'smoke')
  config.dataset.data_dir = data_dir
  config.sample_metrics.extractor = classifier_dir
  config.sample_metrics.num_samples = 200
  workdir = str(tmp_path / 'vae')
  final = train.train_and_evaluate(config, workdir)
  for name in sample_quality.SCALARS:
    assert np.isfinite(final[f'eval_{name}']), name
  logged = {r['step']: r['eval_fid'] for r in helpers.read_metrics(workdir) if 'eval_fid' in r}
  assert sorted(logged) == [0, 4]
  best_step = min(logged, key=logged.get)
  assert os.listdir(os.path.join(workdir, 'best_checkpoint')) == [str(best_step)]
  assert os.path.isdir(os.path.join(data_dir, 'gan_aec_cache'))  # Real features cached.

  record = evaluate.evaluate(workdir, checkpoint='best', references=True)
  best = record['best']
  assert best['step'] == best_step and best['num_samples'] == 200 and best['split'] == 'test'
  assert classifier_dir in best['extractor']
  np.testing.assert_allclose(best['fid'], logged[best_step], rtol=1e-4)  # Same samples.
  assert sum(best['class_histogram']) == 200
  refs = record['references']
  assert refs['real_train_images']['fid'] < refs['uniform_noise']['fid']
  assert refs['one_repeated_image']['classes_covered'] == 1
  assert refs['one_repeated_image']['recall'] == 0.0
  with open(os.path.join(workdir, 'eval.json'), encoding='utf-8') as f:
    assert json.load(f) == record

  with pytest.raises(errors.UserError, match='does not generate samples'):
    evaluate.evaluate(classifier_dir)
