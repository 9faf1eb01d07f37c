"""Many seeds in one program (gan_aec.run.replicas): replica i of K is the run of seed S + i, a
sweep's replica is the run with that value, and the outputs carry mean, std and every replica."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_aec import autoencoder, errors
from gan_aec.data import batching, mnist
from gan_aec.run import config as config_lib, evaluation, loop, replicas, sharding, startup
from tests import helpers

FAMILIES = ('autoencoder', 'denoising_autoencoder', 'vae', 'dcgan', 'mnist_classifier')


def smoke(name: str, tmp_path, **overrides):
  config = config_lib.load_config(name, 'smoke')
  config.dataset.download = False
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


# --------------------------------------------------------------------------------------------------
# Which replicas a config asks for.
# --------------------------------------------------------------------------------------------------

def test_seeds_and_sweep_points_make_the_replicas():
  config = config_lib.load_config('vae', 'smoke')
  config.seed = 5
  assert len(replicas.from_config(config)) == 1
  config.num_seeds = 2
  config.sweep.learning_rate = '1e-3,2e-4'
  config.sweep.beta = '1'
  found = replicas.from_config(config, ('beta',))
  assert found.seeds == (5, 6, 5, 6) and config_lib.num_replicas(config) == 4
  assert [p['learning_rate'] for p in found.points] == [1e-3, 1e-3, 2e-4, 2e-4]
  assert found.labels()[2] == {'replica': 2, 'seed': 5, 'beta': 1.0, 'learning_rate': 2e-4}
  assert found.name(3) == 'replica03_seed6_beta1_learning_rate0.0002'
  np.testing.assert_array_equal(found.step_hyperparameters()['beta'], np.ones(4, np.float32))
  assert set(found.step_hyperparameters()) == {'beta'}  # The learning rate is the optimizer's.


def test_bad_replica_settings_are_config_errors():
  config = config_lib.load_config('autoencoder', 'smoke')
  config.num_seeds = 0
  with pytest.raises(errors.ConfigError, match='num_seeds must be a positive integer'):
    replicas.from_config(config)
  config.num_seeds = 1
  config.sweep.learning_rate = '1e-3,fast'
  with pytest.raises(errors.ConfigError, match='numbers separated by commas'):
    replicas.from_config(config)
  vae_config = config_lib.load_config('vae', 'smoke')
  vae_config.sweep.beta = '0.5,1'
  with pytest.raises(errors.ConfigError, match='cannot be swept for vae'):
    replicas.from_config(vae_config, step_hyperparameters=())


def test_summaries_and_optimizer_hyperparameters():
  assert replicas.summarize('fid', [1.0, 3.0]) == {'fid': 2.0, 'fid_std': 2.0 ** 0.5,
                                                   'fid_per_replica': [1.0, 3.0]}
  assert replicas.summarize('fid', [4.0])['fid_std'] == 0.0
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  states = jax.vmap(lambda _: tx.init({'w': jnp.zeros(3)}))(jnp.arange(2))
  states = replicas.set_optimizer_hyperparameter(states, 'learning_rate', np.array([1.0, 2.0]))
  np.testing.assert_array_equal(states.hyperparams['learning_rate'], [1.0, 2.0])
  with pytest.raises(errors.ConfigError, match='inject_hyperparams'):
    replicas.set_optimizer_hyperparameter(optax.adam(1e-3).init({'w': jnp.zeros(3)}),
                                          'learning_rate', np.ones(2))


# --------------------------------------------------------------------------------------------------
# The library's steps under vmap: the same functions a researcher imports.
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('num_seeds', [2, 4, 8])
@pytest.mark.slow
def test_vmapped_autoencoder_steps_equal_separate_runs(num_seeds):
  digits = mnist.load_bundled().train
  model = autoencoder.ConvAutoencoder()
  tx = optax.adam(1e-3)

  def create(rng):
    return autoencoder.create_train_state(model, tx=tx, rng=rng,
                                          example_images=np.zeros((1, 28, 28, 1), np.float32))

  def batch(seed, step):
    return batching.TrainBatches(digits, 8, seed).get(step)

  step = jax.jit(lambda s, b, r: autoencoder.train_step(s, b, r, microbatch_size=4))
  vstep = jax.jit(jax.vmap(lambda s, b, r: autoencoder.train_step(s, b, r, microbatch_size=4)))
  keys = jax.random.split(jax.random.key(0), num_seeds)
  stacked = jax.jit(jax.vmap(create))(keys)
  singles = [jax.jit(create)(k) for k in keys]
  for i in range(num_seeds):  # The initialisation is bit for bit.
    for a, b in zip(jax.tree.leaves(replicas.replica(stacked, i)), jax.tree.leaves(singles[i])):
      np.testing.assert_array_equal(a, b)
  for s in range(3):
    batches = {k: np.stack([batch(i, s)[k] for i in range(num_seeds)]) for k in ('image',)}
    rngs = jax.random.split(jax.random.key(s + 1), num_seeds)
    stacked, _ = vstep(stacked, batches, rngs)
    singles = [step(singles[i], batch(i, s), rngs[i])[0] for i in range(num_seeds)]
  for i in range(num_seeds):
    for a, b in zip(jax.tree.leaves(replicas.replica(stacked, i)), jax.tree.leaves(singles[i])):
      # Other float32 summation orders under vmap; Adam's division by the gradient's own scale
      # turns them into up to ~3e-5 on near-zero gradients after 3 steps. 1e-4: 10% of one step
      # at lr 1e-3 (the tolerance of tests.helpers.assert_same_state).
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------------------------------
# The training loop with num_seeds and sweeps.
# --------------------------------------------------------------------------------------------------

def test_one_replica_is_the_whole_mesh_as_data():
  config = config_lib.load_config('vae', 'smoke')
  mesh = sharding.make_mesh(config, 1)
  assert mesh.shape['replica'] == 1 and mesh.shape['data'] == len(jax.devices())
  assert replicas.from_config(config).names() == ('replica00_seed0',)


K, SEED = 2, 3  # The stacked runs: seeds 3 and 4.


def _stacked_overrides(family: str) -> dict:
  # The DCGAN's samples are scored by the shipped network (the default extractor), on 100.
  return {'sample_metrics.num_samples': 100} if family == 'dcgan' else {}


@pytest.fixture(scope='module')
def stacked_runs(tmp_path_factory):
  """family -> (workdir, final metrics) of its K-seed smoke run from SEED, trained once for the
  tests of this module that read it."""
  runs = {}

  def get(family):
    if family not in runs:
      workdir = str(tmp_path_factory.mktemp('stacked') / family)
      config = smoke(family, None, seed=SEED, num_seeds=K, **_stacked_overrides(family))
      runs[family] = workdir, loop.train_and_evaluate(config, workdir)
    return runs[family]
  return get


@pytest.mark.slow
@pytest.mark.parametrize('family', FAMILIES)
def test_replica_i_of_k_is_the_run_of_seed_s_plus_i(family, stacked_runs, tmp_path):
  k, seed = K, SEED
  stacked_dir, final = stacked_runs(family)
  step, stacked_state = helpers.final_state(stacked_dir)
  start = helpers.read_metrics(stacked_dir)[0]
  assert [r['seed'] for r in start['replicas']] == [seed, seed + 1]
  eval_names = sorted(n for n in final if n.startswith('eval_') and n.endswith('_per_replica'))
  assert eval_names
  for i in range(1, k):  # Replica 1, seed S + 1: replica 0 is the same code with offset 0.
    single_dir = str(tmp_path / f'seed{seed + i}')
    single = loop.train_and_evaluate(
        smoke(family, tmp_path, seed=seed + i, **_stacked_overrides(family)), single_dir)
    single_step, single_state = helpers.final_state(single_dir)
    assert single_step == step
    helpers.assert_same_state(replicas.replica(stacked_state, i), single_state)
    for name in eval_names:
      np.testing.assert_allclose(final[name][i], single[name.removesuffix('_per_replica')],
                                 rtol=1e-4, atol=1e-5, err_msg=name)
    assert os.listdir(os.path.join(stacked_dir, 'replicas', f'replica{i:02d}_seed{seed + i}',
                                   'figures'))
  for name in eval_names:
    values = final[name]
    base = name.removesuffix('_per_replica')
    np.testing.assert_allclose(final[base], np.mean(values), rtol=1e-6)
    np.testing.assert_allclose(final[f'{base}_std'], np.std(values, ddof=1), rtol=1e-6)


@pytest.mark.slow
def test_a_learning_rate_and_beta_sweep_replica_is_the_run_with_those_values(tmp_path):
  sweep = {'sweep.learning_rate': '1e-3,3e-4', 'sweep.beta': '0.5'}
  stacked_dir = str(tmp_path / 'sweep')
  final = loop.train_and_evaluate(smoke('vae', tmp_path, **sweep), stacked_dir)
  labels = helpers.read_metrics(stacked_dir)[0]['replicas']
  assert [(r['learning_rate'], r['beta']) for r in labels] == [(1e-3, 0.5), (3e-4, 0.5)]
  _, stacked_state = helpers.final_state(stacked_dir)
  # A one-point sweep is one replica, trained at the swept values (not config.learning_rate).
  point_dir = str(tmp_path / 'point')
  point = loop.train_and_evaluate(
      smoke('vae', tmp_path, **{'sweep.learning_rate': '3e-4', 'sweep.beta': '0.5'}), point_dir)
  _, point_state = helpers.final_state(point_dir)
  helpers.assert_same_state(replicas.replica(stacked_state, 1), point_state)  # The whole state.
  np.testing.assert_allclose(final['eval_neg_elbo_per_replica'][1], point['eval_neg_elbo'],
                             rtol=1e-4)
  # ... and equal to the run with those values as its config's own (another optimizer state
  # structure: no injected hyperparameters).
  plain_dir = str(tmp_path / 'plain')
  plain = loop.train_and_evaluate(smoke('vae', tmp_path, learning_rate=3e-4, beta=0.5), plain_dir)
  helpers.assert_same_state(point_state['params'], helpers.final_state(plain_dir)[1]['params'])
  assert plain['eval_neg_elbo'] == pytest.approx(point['eval_neg_elbo'], rel=1e-5)
  # A resume must not change the replicas.
  with pytest.raises(errors.WorkdirMismatchError, match='sweep.learning_rate'):
    loop.train_and_evaluate(smoke('vae', tmp_path, num_train_steps=6,
                                  **{'sweep.learning_rate': '1e-3', 'sweep.beta': '0.5'}),
                            stacked_dir)


def test_replicas_of_one_seed_share_their_batches_and_each_piece_is_built_once(monkeypatch):
  config = config_lib.load_config('vae', 'smoke')
  config.sweep.learning_rate = '1e-3,2e-4,1e-4'
  config.num_seeds = 2  # Six replicas: each of the two seeds at three learning rates.
  found = replicas.from_config(config, ('beta',))
  digits = mnist.load_bundled().train
  calls = []
  original = batching.TrainBatches.get

  def counted(self, step, part=None):
    calls.append((self.seed, step, part))
    return original(self, step, part)
  monkeypatch.setattr(batching.TrainBatches, 'get', counted)
  batches = {seed: batching.TrainBatches(digits, 8, seed) for seed in sorted(set(found.seeds))}
  mesh = sharding.make_mesh(config, len(found))
  groups = sharding.ReplicaGroups(mesh, len(found), sharding.replicas_per_call(mesh, len(found)))
  run = startup.Run.__new__(startup.Run)  # Only the fields train_batch reads.
  for name, value in {'replicas': found, 'batches': batches, 'config': config, 'mesh': mesh,
                      'groups': groups,
                      'example_batch': original(batches[0], 0, slice(0, 1))}.items():
    object.__setattr__(run, name, value)
  batches_by_group = loop.train_batch(run, 5)
  assert len(batches_by_group) == groups.calls
  batch = np.asarray(groups.join([b['image'] for b in batches_by_group]))  # Replica order.
  assert batch.shape == (6, 8, 28, 28, 1)
  pieces = mesh.shape['data']  # Each device of a replica holds one piece of its batch.
  assert len(calls) == 2 * pieces and {c[0] for c in calls} == {0, 1}
  for r, seed in enumerate(found.seeds):
    np.testing.assert_array_equal(batch[r], original(batches[seed], 5)['image'])


@pytest.mark.slow
def test_a_stacked_run_resumes_exactly_and_names_a_diverged_replica(tmp_path):
  whole, parts = str(tmp_path / 'whole'), str(tmp_path / 'parts')
  loop.train_and_evaluate(smoke('autoencoder', tmp_path, num_seeds=3), whole)
  loop.train_and_evaluate(smoke('autoencoder', tmp_path, num_seeds=3, num_train_steps=2), parts)
  loop.train_and_evaluate(smoke('autoencoder', tmp_path, num_seeds=3), parts)
  helpers.assert_same_run(parts, whole, skip_eval_at=(2,))
  with pytest.raises(errors.WorkdirMismatchError, match='num_seeds'):
    loop.train_and_evaluate(smoke('autoencoder', tmp_path, num_seeds=2, num_train_steps=6), whole)


@pytest.mark.slow
def test_a_diverged_replica_stops_the_run_naming_it(tmp_path):
  # A VAE at learning rate 1e3: the log-variance overflows exp() at once.
  with pytest.raises(errors.NonFiniteError, match=r'in replica 1 \(seed=0, learning_rate=1000'):
    loop.train_and_evaluate(smoke('vae', tmp_path, log_every_steps=1,
                                  **{'sweep.learning_rate': '1e-3,1e3'}), str(tmp_path / 'nan'))


@pytest.mark.slow
def test_stacked_dcgan_logs_per_replica_sample_metrics_and_evaluate_reports_them(stacked_runs):
  workdir, final = stacked_runs('dcgan')
  fids = final['eval_fid_per_replica']
  assert len(fids) == 2 and fids[0] != fids[1]  # Two generators, two FIDs.
  np.testing.assert_allclose(final['eval_fid_std'], np.std(fids, ddof=1), rtol=1e-6)
  assert sorted(os.listdir(os.path.join(workdir, 'best_checkpoint'))) == [
      f'replica00_seed{SEED}', f'replica01_seed{SEED + 1}']
  record = evaluation.evaluate_checkpoints(workdir, checkpoint='latest,best')
  for label in ('latest', 'best'):
    assert [r['seed'] for r in record[label]['replicas']] == [SEED, SEED + 1]
    np.testing.assert_allclose(record[label]['fid'],
                               np.mean([r['fid'] for r in record[label]['replicas']]))
  np.testing.assert_allclose([r['fid'] for r in record['latest']['replicas']],
                             final['eval_fid_per_replica'], rtol=1e-4)
  with open(os.path.join(workdir, 'eval.json'), encoding='utf-8') as f:
    assert json.load(f) == record
