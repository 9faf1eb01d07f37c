"""mnist-clf-v1, the feature network in the package: it loads, it is the network its name and hash
say, it classifies the bundled test digits, and every MNIST run measures its samples in it."""

import json

import jax
import numpy as np
import pytest

from gan_aec.classifier import shipped
from gan_aec.data import mnist
from gan_aec.run import config as config_lib, sample_quality
from gan_aec import errors


@pytest.fixture(scope='module')
def network():
  return shipped.load()


def test_the_shipped_weights_are_mnist_clf_v1_and_under_a_megabyte(network):
  model, params = network
  assert shipped.digest(params) == shipped.DIGEST
  assert shipped.describe(params) == f'mnist-clf-v1 sha256:{shipped.DIGEST}'
  assert sum(x.size for x in jax.tree.leaves(params)) * 4 < 2**20
  # The file round-trips to the same network.
  assert shipped.digest(shipped.from_bytes(shipped.to_bytes(params))) == shipped.DIGEST
  # Its parameters are the architecture's.
  fresh = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))['params']
  assert jax.tree.structure(fresh) == jax.tree.structure(params)


def test_an_altered_weights_file_is_refused(network, tmp_path):
  _, params = network
  altered = jax.tree.map(lambda x: x, params)
  altered['logits_dense']['bias'] = altered['logits_dense']['bias'] + 1e-3
  with pytest.raises(errors.ExtractorError, match='not mnist-clf-v1'):
    shipped.check(altered)


def test_it_classifies_the_bundled_test_digits(network):
  model, params = network
  test = mnist.load_bundled().test
  logits = model.apply({'params': params}, test.images.astype(np.float32) / 255.0)
  accuracy = float(np.mean(np.asarray(logits).argmax(-1) == test.labels))
  assert accuracy > 0.98, accuracy


def test_mnist_runs_default_to_it_and_celeb_a_runs_do_not():
  assert config_lib.load_config('dcgan').sample_metrics.extractor == shipped.NAME
  assert config_lib.load_config('vae').sample_metrics.extractor == shipped.NAME
  assert config_lib.load_config('dcgan', 'celeb_a64').sample_metrics.extractor is None
  assert config_lib.load_config('vae', 'celeb_a').sample_metrics.extractor is None
  faces = config_lib.load_config('dcgan', 'celeb_a')
  faces.sample_metrics.extractor = shipped.NAME
  with pytest.raises(errors.ConfigError, match='scores 28x28 MNIST digits'):
    config_lib.validate(faces, 1)
  extractor = sample_quality.load_extractor(shipped.NAME)
  assert extractor.description == f'mnist-clf-v1 sha256:{shipped.DIGEST}'


@pytest.mark.slow
def test_a_bare_dcgan_run_reports_sample_metrics_named_by_the_network(tmp_path):
  from gan_aec.run import loop, metric_logging  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config('dcgan', 'smoke')  # Its defaults, but for the size.
  config.dataset.download = False
  final = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert np.isfinite(final['eval_fid']) and 0 <= final['eval_precision'] <= 1
  evals = [r for r in metric_logging.read_records(str(tmp_path / 'run')) if 'eval_fid' in r]
  assert evals and all(r['eval_extractor'] == f'mnist-clf-v1 sha256:{shipped.DIGEST}'
                       for r in evals)
  saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
  assert saved['sample_metrics']['extractor'] == 'mnist-clf-v1'
