"""The public API: a deliberate, documented, typed surface whose steps compose with user code.

- every name in each public `__all__` exists, has a docstring, and every function (and public
  method) annotates all its parameters and its return;
- the DCGAN and VAE steps, driven from a hand-written loop with optimizers our configs do not use,
  give under `jax.vmap` over two seeds what two separate runs give;
- gan_aec.layers' Conv / ConvTranspose are drop-ins for flax.linen's on the common arguments;
- the API reference builds from the docstrings with no warning and no broken link.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import subprocess
import sys
import types
import typing

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gan_aec
from gan_aec import dcgan, layers, vae
from gan_aec.run import config as config_lib, tasks

from tests import helpers

REPO = helpers.REPO

# The deliberate surface: changing it is an API change (update README.md and CHANGELOG.md too).
EXPECTED_SURFACE = {
    'gan_aec': ['__version__', 'autoencoder', 'classifier', 'dcgan', 'figures', 'layers',
                'sample_metrics', 'train_state', 'vae'],
    'gan_aec.autoencoder': ['ConvAutoencoder', 'add_noise', 'create_train_state', 'encode',
                            'eval_step', 'psnr', 'reconstruct', 'reconstruction_loss',
                            'train_step'],
    'gan_aec.vae': ['ConvVAE', 'bernoulli_nll', 'binarize', 'create_train_state', 'decode',
                    'encode', 'eval_step', 'gaussian_kl', 'importance_weighted_nll',
                    'iwae_log_weights', 'iwae_nll', 'negative_elbo', 'reparameterize', 'sample',
                    'train_step'],
    'gan_aec.dcgan': ['Discriminator', 'GANState', 'Generator', 'LOSSES', 'create_gan_state',
                      'eval_step', 'generate', 'hinge', 'least_squares', 'non_saturating',
                      'sample_latents', 'train_step'],
    'gan_aec.classifier': ['Classifier', 'create_train_state', 'cross_entropy', 'eval_step',
                           'features', 'random_shift', 'train_step'],
    'gan_aec.layers': ['Conv', 'ConvTranspose', 'Dropout', 'max_pool_2x2', 'nearest_resize'],
    'gan_aec.sample_metrics': ['class_statistics', 'density_coverage', 'fid', 'frechet_distance',
                               'kid', 'knn_radii', 'mmd2_unbiased', 'precision_recall'],
    'gan_aec.train_state': ['TrainState', 'create', 'init'],
    # No __all__: its public functions are those without a leading underscore.
    'gan_aec.figures': ['save_confusion_matrix', 'save_image_grid', 'save_image_rows',
                        'save_scatter', 'tile'],
}

LOSS_FUNCTIONS = ['gan_aec.autoencoder.reconstruction_loss', 'gan_aec.autoencoder.psnr',
                  'gan_aec.vae.bernoulli_nll', 'gan_aec.vae.gaussian_kl',
                  'gan_aec.vae.negative_elbo', 'gan_aec.vae.iwae_log_weights',
                  'gan_aec.vae.iwae_nll', 'gan_aec.dcgan.non_saturating', 'gan_aec.dcgan.hinge',
                  'gan_aec.dcgan.least_squares', 'gan_aec.classifier.cross_entropy']


def public_names(module: types.ModuleType) -> list[str]:
  """`__all__`, or else the module's own public functions and classes (private by name)."""
  if hasattr(module, '__all__'):
    return sorted(module.__all__)
  return sorted(name for name, obj in vars(module).items()
                if not name.startswith('_') and (inspect.isfunction(obj) or inspect.isclass(obj))
                and obj.__module__ == module.__name__)


def surface() -> dict[str, object]:
  """'module.name' -> object for every public name of every public module."""
  objects = {}
  for module_name in EXPECTED_SURFACE:
    module = importlib.import_module(module_name)
    for name in public_names(module):
      objects[f'{module_name}.{name}'] = getattr(module, name)
  return objects


def own_methods(cls: type) -> dict[str, object]:
  """The public methods and properties a class defines itself (not Flax's or dataclass's)."""
  methods = {}
  for name, obj in vars(cls).items():
    if name.startswith('_') and name != '__call__':
      continue
    if isinstance(obj, property):
      obj = obj.fget
    if inspect.isfunction(obj) and obj.__module__.startswith('gan_aec'):
      methods[name] = obj  # Not what flax.struct generates (replace).
  return methods


def annotation_problems(qualname: str, fn) -> list[str]:
  problems = []
  if not (fn.__doc__ or '').strip():
    problems.append(f'{qualname}: no docstring')
  signature = inspect.signature(fn)
  for param in signature.parameters.values():
    if param.name not in ('self', 'cls') and param.annotation is inspect.Parameter.empty:
      problems.append(f'{qualname}: parameter {param.name!r} has no type hint')
  if signature.return_annotation is inspect.Signature.empty:
    problems.append(f'{qualname}: no return type hint')
  try:
    typing.get_type_hints(fn)
  except Exception as e:  # pylint: disable=broad-except
    problems.append(f'{qualname}: type hints do not resolve: {e!r}')
  return problems


def test_public_modules_export_exactly_the_expected_surface():
  for module_name, expected in EXPECTED_SURFACE.items():
    module = importlib.import_module(module_name)
    assert public_names(module) == sorted(expected), module_name
    for name in expected:
      assert hasattr(module, name), f'{module_name}.{name} is in __all__ but does not exist'
  assert gan_aec.__version__ == '0.1.0'
  assert (REPO / 'gan_aec' / 'py.typed').exists()


def test_every_public_function_and_method_has_a_docstring_and_type_hints():
  problems = []
  for qualname, obj in surface().items():
    if isinstance(obj, types.ModuleType):
      problems += [] if (obj.__doc__ or '').strip() else [f'{qualname}: no module docstring']
    elif inspect.isclass(obj):
      if not (obj.__doc__ or '').strip():
        problems.append(f'{qualname}: no docstring')
      for name, method in own_methods(obj).items():
        problems += annotation_problems(f'{qualname}.{name}', method)
    elif callable(obj):
      problems += annotation_problems(qualname, obj)
  assert not problems, '\n'.join(problems)


def test_loss_functions_take_keyword_only_arguments():
  objects = surface()
  for qualname in LOSS_FUNCTIONS:
    kinds = {p.kind for p in inspect.signature(objects[qualname]).parameters.values()}
    assert kinds == {inspect.Parameter.KEYWORD_ONLY}, qualname


def test_import_gan_aec_is_light_and_loads_submodules_on_use():
  code = ('import sys, gan_aec; assert "jax" not in sys.modules, "import gan_aec loaded jax"; '
          'assert callable(gan_aec.dcgan.train_step); assert "jax" in sys.modules')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO)


def test_the_training_loop_wraps_the_same_public_functions():
  """Our loop binds hyperparameters to the public steps; it does not fork them."""
  for name, family in [('dcgan', dcgan), ('vae', vae)]:
    task = tasks.build_task(config_lib.load_config(name, 'smoke'))
    assert isinstance(task.train_step, functools.partial)
    assert task.train_step.func is family.train_step
    eval_fn = getattr(task.eval_step, 'func', task.eval_step)
    assert eval_fn is family.eval_step


# --------------------------------------------------------------------------------------------------
# Steps compose: a hand-written loop, other optimizers, jax.vmap over seeds == separate runs.
# --------------------------------------------------------------------------------------------------

NUM_STEPS = 2


def _vmapped_and_separate(init_fn, step_fn, batch, seeds=(0, 1)):
  """(state, metrics) of NUM_STEPS steps per seed: under one vmap, and run one seed at a time."""
  def rng_for(seed, step):
    return jax.random.fold_in(jax.random.key(1000 + seed), step)

  seeds_array = jnp.asarray(seeds)
  states = jax.jit(jax.vmap(init_fn))(seeds_array)
  vstep = jax.jit(jax.vmap(step_fn, in_axes=(0, None, 0)))
  for step in range(NUM_STEPS):
    rngs = jax.vmap(rng_for, in_axes=(0, None))(seeds_array, step)
    states, metrics = vstep(states, batch, rngs)

  separate = []
  jitted_step = jax.jit(step_fn)
  for seed in seeds:
    state = jax.jit(init_fn)(jnp.asarray(seed))
    for step in range(NUM_STEPS):
      state, seed_metrics = jitted_step(state, batch, rng_for(seed, step))
    separate.append((state, seed_metrics))
  return (states, metrics), separate


def _assert_vmapped_equals_separate(vmapped, separate):
  for i, expected in enumerate(separate):
    got = jax.tree.map(lambda x, i=i: x[i], vmapped)
    # Leaves only: the static fields (apply_fn, tx) are the same objects either way.
    chex.assert_trees_all_close(jax.tree.leaves(got), jax.tree.leaves(expected), rtol=2e-4,
                                atol=2e-5)
  # The two seeds really differ, so the comparison above is not vacuous.
  first, second = (jax.tree.leaves(s[0]) for s in separate)
  assert any(not np.allclose(a, b) for a, b in zip(first, second))


@pytest.mark.slow
def test_dcgan_steps_under_vmap_over_seeds_equal_separate_runs():
  # Not our configs' Adam: SGD with a schedule for the generator, clipped SGD with Nesterov momentum
  # for the discriminator. (Not an Adam-type optimizer here: the biases feeding BatchNorm have a
  # gradient of exactly 0 in theory, float32 noise in practice, which Adam's normalisation scales
  # up to +-lr, differently under vmap's batched convolutions than without.)
  g_tx = optax.sgd(optax.linear_schedule(0.05, 0.01, transition_steps=10), momentum=0.5)
  d_tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.02, momentum=0.9, nesterov=True))
  images = jax.random.uniform(jax.random.key(7), (3, 28, 28, 1), minval=-1.0, maxval=1.0)

  def init(seed):
    return dcgan.create_gan_state(dcgan.Generator(), dcgan.Discriminator(), tx=g_tx, d_tx=d_tx,
                                  rng=jax.random.key(seed), example_images=images,
                                  latent_dim=16, use_ema=True)

  step = functools.partial(dcgan.train_step, latent_dim=16, loss='hinge', ema_decay=0.9)
  vmapped, separate = _vmapped_and_separate(init, step, {'image': images})
  _assert_vmapped_equals_separate(vmapped, separate)
  state = separate[0][0]
  assert int(state.step) == NUM_STEPS
  assert state.generator.tx is g_tx and state.discriminator.tx is d_tx
  chex.assert_shape(dcgan.generate(state, dcgan.sample_latents(jax.random.key(0), 5, 16)),
                    (5, 28, 28, 1))


@pytest.mark.slow
def test_vae_steps_under_vmap_over_seeds_equal_separate_runs():
  # Not our config's RMSProp: AdamW with a cosine schedule.
  tx = optax.adamw(optax.cosine_decay_schedule(1e-3, decay_steps=10), weight_decay=1e-4)
  images = jax.random.uniform(jax.random.key(7), (5, 28, 28, 1))
  model = vae.ConvVAE(latent_dim=3)

  def init(seed):
    return vae.create_train_state(model, tx=tx, rng=jax.random.key(seed), example_images=images)

  step = functools.partial(vae.train_step, beta=0.5, dynamic_binarization=True)
  vmapped, separate = _vmapped_and_separate(init, step, {'image': images})
  _assert_vmapped_equals_separate(vmapped, separate)
  state = separate[0][0]
  mean, logvar = vae.encode(state, images)
  chex.assert_shape([mean, logvar], (5, 3))
  samples = vae.sample(state, jax.random.key(0), 4, 3)
  chex.assert_shape(samples, (4, 28, 28, 1))
  assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


# --------------------------------------------------------------------------------------------------
# The fast layers are drop-ins for flax.linen.Conv / ConvTranspose.
# --------------------------------------------------------------------------------------------------

DROP_IN_KWARGS = [
    dict(features=8, kernel_size=(3, 3)),
    dict(features=8, kernel_size=(5, 5), strides=(2, 2), padding='SAME'),
    dict(features=4, kernel_size=(4, 4), strides=2, use_bias=False),
    dict(features=6, kernel_size=(3, 3), strides=(2, 2),
         kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(0.1)),
]


@pytest.mark.parametrize('kwargs', DROP_IN_KWARGS, ids=lambda kw: ','.join(
    v.__qualname__.split('.')[0] if callable(v) else str(v) for v in kw.values()))
@pytest.mark.parametrize('ours,flax_class', [(layers.Conv, nn.Conv),
                                             (layers.ConvTranspose, nn.ConvTranspose)],
                         ids=['Conv', 'ConvTranspose'])
def test_fast_layers_are_drop_ins_for_flax_layers(ours, flax_class, kwargs):
  kwargs = dict(kwargs)
  if flax_class is nn.ConvTranspose:
    kwargs.setdefault('strides', (1, 1))  # Flax's default; ours is (2, 2) (see its docstring).
  x = jax.random.normal(jax.random.key(0), (2, 7, 7, 5))
  flax_layer, fast_layer = flax_class(**kwargs), ours(**kwargs)
  flax_params = flax_layer.init(jax.random.key(1), x)
  fast_params = fast_layer.init(jax.random.key(1), x)
  # Same parameter names, shapes and initial values from the same key.
  chex.assert_trees_all_equal(fast_params, flax_params)
  expected = flax_layer.apply(flax_params, x)
  scale = float(jnp.abs(expected).max())
  chex.assert_trees_all_close(fast_layer.apply(flax_params, x), expected, rtol=0,
                              atol=1e-5 * scale)


def test_fast_layers_reject_what_they_do_not_implement():
  x = jnp.ones((1, 4, 4, 2))
  with pytest.raises(ValueError, match='padding'):
    layers.Conv(4, (3, 3), padding='VALID').init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='strides'):
    layers.ConvTranspose(4, (3, 3), strides=3).init(jax.random.key(0), x)


# --------------------------------------------------------------------------------------------------
# The API reference.
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_api_reference_builds_with_no_warning_or_broken_link(tmp_path):
  """Exactly the README's command; it exits 1 on any pdoc warning or broken link."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
  result = subprocess.run([sys.executable, 'docs/build_api.py', str(tmp_path / 'api')], cwd=REPO,
                          env=env, capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr
  pages = {p.relative_to(tmp_path / 'api').as_posix() for p in (tmp_path / 'api').rglob('*.html')}
  assert {'gan_aec.html', 'gan_aec/dcgan.html', 'gan_aec/vae.html',
          'gan_aec/layers.html'} <= pages
  assert not any(p.startswith(('gan_aec/run', 'gan_aec/data')) for p in pages)  # The application.


def _docs_builder():
  sys.path.insert(0, str(REPO / 'docs'))
  try:
    return importlib.import_module('build_api')
  finally:
    sys.path.remove(str(REPO / 'docs'))


def test_api_reference_build_fails_on_a_broken_reference(tmp_path, monkeypatch):
  build_api = _docs_builder()
  (tmp_path / 'page.html').write_text('<h1 id="here">x</h1><a href="#here">ok</a>'
                                      '<a href="#gone">broken anchor</a>'
                                      '<a href="other.html">missing page</a>')
  problems = build_api.broken_links(tmp_path)
  assert len(problems) == 2 and 'gone' in problems[0] and 'other.html' in problems[1], problems

  monkeypatch.setattr(vae, '__all__', [*vae.__all__, 'no_such_function'])
  problems = build_api.build(tmp_path / 'api')
  assert any('no_such_function' in p for p in problems), problems
