"""Config pieces every config file shares, the one check of a config's fields, and config loading.

Each configs/*.py file builds its ConfigDict from these blocks (dataset, sample metrics, loop
fields, the smoke shrink); `validate` is the one place a config's shared fields are checked,
before any data is read or anything compiled; each family's own fields are checked where its
task reads them (gan_aec.run.tasks).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import math
import os
from typing import Any, Sequence

import ml_collections

from gan_aec import data
from gan_aec.errors import ConfigError

# The size of configs that do not set `image_size` (every model but the DCGAN is 28x28 only).
DEFAULT_IMAGE_SIZE = 28
COMPUTE_DTYPES = ('float32', 'bfloat16')
POSITIVE_FIELDS = ('batch_size', 'num_train_steps', 'log_every_steps', 'eval_every_steps',
                   'checkpoint_every_steps', 'eval_batch_size', 'sample_every_steps', 'latent_dim')
OPTIMIZER_HYPERPARAMETERS = ('learning_rate',)  # Swept through optax.inject_hyperparams.
# The sample metrics' fewest samples: density and coverage use each point's 5th nearest neighbour.
MIN_SAMPLE_METRICS_SAMPLES = 6


def dataset_config(name: str = 'mnist') -> ml_collections.ConfigDict:
  """The `config.dataset` block."""
  dataset = ml_collections.ConfigDict()
  dataset.name = name  # 'mnist' (28x28 grey) or 'celeb_a' (RGB faces; channels follow the data).
  # TFDS data dir; None = default.
  dataset.data_dir = ml_collections.FieldReference(None, field_type=str)
  # No `mnist` in data_dir and no network: train on the bundled 10,000 real test digits
  # (8,000 train / 2,000 test) with a warning. False: stop with the offline-import command instead.
  dataset.offline_fallback = True
  dataset.download = True  # Let TFDS download when the data is missing and the server answers.
  # Evaluate on the first this many test images only (None: the whole test split). For the smoke
  # variants, whose evaluations would otherwise dominate a test's time; never for numbers.
  dataset.test_images = ml_collections.FieldReference(None, field_type=int)
  # CelebA only: where the decoded, cropped and resized splits are cached as uint8 .npy files
  # (default: <data_dir>/gan_aec_cache).
  dataset.cache_dir = ml_collections.FieldReference(None, field_type=str)
  # Filled in by the run: 'tfds' or (MNIST only) 'bundled_mnist_t10k'; recorded in config.json
  # and metrics.jsonl.
  dataset.source = ml_collections.FieldReference(None, field_type=str)
  return dataset


SHIPPED_EXTRACTOR = 'mnist-clf-v1'  # gan_aec.classifier.shipped.NAME


def sample_metrics_config(extractor: str | None = SHIPPED_EXTRACTOR) -> ml_collections.ConfigDict:
  """The `config.sample_metrics` block of the generative models (see gan_aec.run.sample_quality)."""
  block = ml_collections.ConfigDict()
  # The feature network: 'mnist-clf-v1' (shipped in the package, for MNIST digits), a
  # configs/mnist_classifier.py workdir, or python:package.module:function (a network you supply,
  # e.g. for CelebA; see gan_aec.run.sample_quality). Set: FID, KID, precision/recall,
  # density/coverage and class statistics at every evaluation, and the best-FID state kept in
  # WORKDIR/best_checkpoint. None (on the command line: --config.sample_metrics.extractor=None):
  # none of these.
  block.extractor = ml_collections.FieldReference(extractor, field_type=str)
  block.num_samples = 10_000  # N generated and N real test images (fewer if the split is smaller).
  return block


def extractor_spec(config: ml_collections.ConfigDict) -> str | None:
  """config.sample_metrics.extractor, or None for no feature network: None, or the text 'None'
  (or '') that `--config.sample_metrics.extractor=None` leaves in the config's string field."""
  spec = (config.get('sample_metrics') or {}).get('extractor')
  if spec is None or str(spec).strip().lower() in ('', 'none'):
    return None
  return spec


def compute_dtype(config: ml_collections.ConfigDict):
  """`config.compute_dtype` ('float32' when absent) as a JAX dtype; ConfigError if unsupported."""
  name = config.get('compute_dtype', 'float32')
  if name not in COMPUTE_DTYPES:
    raise ConfigError(f'compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {name!r}.')
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp.dtype(name)


def image_size(config: ml_collections.ConfigDict) -> int:
  """The square image size the model trains at: `config.image_size`, 28 when the config has none."""
  return int(config.get('image_size', DEFAULT_IMAGE_SIZE))


def channels(config: ml_collections.ConfigDict) -> int:
  """Image channels of config.dataset (1 for MNIST, 3 for CelebA): the models' outputs follow it."""
  return data.get(config.dataset.name).channels


def add_loop_fields(config: ml_collections.ConfigDict,
                    sweepable: tuple[str, ...] = ('learning_rate',)) -> ml_collections.ConfigDict:
  """Loop settings every config shares, with their defaults; `sweepable` names the
  hyperparameters `config.sweep` may vary (the learning rate, and float hyperparameters the
  family's train step takes per replica)."""
  # Replicas trained as one program (gan_aec.run.replicas): num_seeds independent runs, replica i
  # being exactly the run with seed + i; and values to sweep, comma-separated (e.g.
  # --config.sweep.learning_rate=1e-4,2e-4): the replicas are every (sweep point, seed) pair.
  config.num_seeds = 1
  config.sweep = ml_collections.ConfigDict(
      {name: ml_collections.FieldReference(None, field_type=str) for name in sweepable})
  # Keep, beside the newest 3 checkpoints, every one at a multiple of this many steps (a multiple
  # of checkpoint_every_steps), e.g. to score each later: python -m gan_aec.evaluate
  # --workdir=W --checkpoint=STEP. None: the newest 3 only.
  config.keep_every_steps = ml_collections.FieldReference(None, field_type=int)
  # Evaluate the untrained model at step 0 (the start of every eval curve). Turn off when an
  # evaluation is expensive, e.g. the VAE's IWAE bound with 1,000 samples.
  config.eval_at_start = True
  # Resuming a workdir whose config.json differs in a field that defines the experiment (model,
  # data, optimiser, batch size, seed, ...) is an error unless this is True (gan_aec.run.workdir).
  config.allow_config_change = False
  # On CPU, one JAX device per core, each training on a shard of the batch (run/cpu_devices.py).
  # False: one device that uses every core (faster for models with BatchNorm and wide matmuls).
  config.cpu_data_parallel = True
  return config


def variants(arg: str | None, known: Sequence[str], config_file: str) -> set[str]:
  """The variants a `--config=FILE:a,b` names (`arg` of get_config), each checked against `known`.

  A config applies them in its own order, whatever the argument's: `if 'celeb_a' in chosen: ...`,
  then `if 'smoke' in chosen: ...` last, so that smoke shrinks whatever the others set.
  config_file: the config's name in the error, e.g. 'configs/vae.py'.
  """
  chosen = [variant for variant in (arg or '').split(',') if variant]
  for variant in chosen:
    if variant not in known:
      raise ValueError(f'Unknown variant {variant!r} of {config_file}; known: '
                       f'{", ".join(known)}.')
  return set(chosen)


def apply_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to seconds of work: for tests and CI, never for numbers."""
  config.batch_size = 8
  config.eval_batch_size = 64
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.eval_every_steps = 4
  config.eval_at_start = False  # One evaluation, at the end (tests of the first one set it).
  config.checkpoint_every_steps = 2
  config.dataset.test_images = 256
  return config


def sweep_values(name: str, text: Any) -> list[float]:
  """'1e-4,2e-4' (or a number, or a sequence) -> [1e-4, 2e-4]; ConfigError when malformed."""
  if isinstance(text, (int, float)):
    return [float(text)]
  parts = text if isinstance(text, (list, tuple)) else str(text).split(',')
  try:
    values = [float(p) for p in parts if str(p).strip()]
  except ValueError as e:
    raise ConfigError(f'config.sweep.{name}={text!r}: give numbers separated by commas, e.g. '
                      f'--config.sweep.{name}=1e-4,2e-4.') from e
  if not values:
    raise ConfigError(f'config.sweep.{name} is empty.')
  return values


def seeds_and_sweep(config: ml_collections.ConfigDict) -> tuple[int, dict[str, list[float]]]:
  """(config.num_seeds, {name: values} of config.sweep's set entries, sorted by name); a
  ConfigError for no seeds, values that are not numbers, or a swept optimizer hyperparameter
  that is not positive. (Which names a model can sweep: gan_aec.run.replicas.from_config.)"""
  num_seeds = int(config.get('num_seeds', 1))
  if num_seeds < 1:
    raise ConfigError(f'config.num_seeds must be a positive integer, got {num_seeds}.')
  sweep = {}
  for name, text in sorted((config.get('sweep') or {}).items()):
    if text is None or text == '':
      continue
    sweep[name] = sweep_values(name, text)
    if name in OPTIMIZER_HYPERPARAMETERS and min(sweep[name]) <= 0:
      raise ConfigError(f'config.sweep.{name} must hold positive values, got {text}.')
  return num_seeds, sweep


def num_replicas(config: ml_collections.ConfigDict) -> int:
  """How many replicas config asks for: num_seeds times the sweep's points."""
  num_seeds, sweep = seeds_and_sweep(config)
  return num_seeds * math.prod(len(values) for values in sweep.values())


def check(config: ml_collections.ConfigDict) -> None:
  """Stops a bad config with a ConfigError, from the config alone (no JAX, no data, no devices):
  the dataset and its image size, the positive sizes and steps, the compute dtype, the seed, the
  learning rate, the seeds and the sweep's values, the sample metrics' settings. gan_aec.main
  runs it before it imports JAX; `validate` runs it again with the devices' checks. (The model
  name and each family's own fields are checked by gan_aec.run.tasks.build_task.)"""
  data.get(config.dataset.name, image_size(config))
  for field in POSITIVE_FIELDS:
    if field in config and int(config[field]) <= 0:
      raise ConfigError(f'config.{field} must be a positive integer, got {config[field]}.')
  seeds_and_sweep(config)
  if config.get('compute_dtype', 'float32') not in COMPUTE_DTYPES:
    compute_dtype(config)  # Raises its ConfigError.
  if int(config.seed) < 0:
    raise ConfigError(f'config.seed must be a non-negative integer, got {config.seed}.')
  if 'learning_rate' in config and not config.learning_rate > 0:
    raise ConfigError(f'config.learning_rate must be positive, got {config.learning_rate}.')
  test_images = config.dataset.get('test_images')
  if test_images is not None and test_images <= 0:
    raise ConfigError(f'config.dataset.test_images must be a positive integer or None (the whole '
                      f'test split), got {test_images}.')
  keep = config.get('keep_every_steps')
  if keep is not None and (keep <= 0 or keep % config.checkpoint_every_steps):
    raise ConfigError(f'config.keep_every_steps={keep} must be a positive multiple of '
                      f'config.checkpoint_every_steps={config.checkpoint_every_steps}.')
  extractor = extractor_spec(config)
  if extractor and config.sample_metrics.num_samples < MIN_SAMPLE_METRICS_SAMPLES:
    raise ConfigError(f'config.sample_metrics.num_samples must be at least '
                      f'{MIN_SAMPLE_METRICS_SAMPLES} (density and coverage use each sample\'s '
                      f'5th nearest neighbour), got {config.sample_metrics.num_samples}.')
  if (extractor == SHIPPED_EXTRACTOR
      and (config.dataset.name != 'mnist' or image_size(config) != 28)):
    raise ConfigError(f'config.sample_metrics.extractor={SHIPPED_EXTRACTOR} scores 28x28 MNIST '
                      f'digits, not {config.dataset.name} at {image_size(config)}px: set it to '
                      'python:module:function (a network of yours, docs/sample_quality.md) or '
                      'None.')


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Stops a bad config with a ConfigError before any data is read or anything is compiled:
  `check`, and that the batch sizes split evenly over `num_devices` data-parallel devices."""
  check(config)
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] % num_devices:
      raise ConfigError(f'config.{field}={config[field]} is not divisible by the {num_devices} '
                        f'devices; use a multiple of {num_devices}.')


def configs_dir() -> str:
  """The folder of the configs/*.py files: the installed package's copy (`gan_aec.configs`, the
  repository's configs/ shipped with the wheel), else configs/ beside the package in a checkout."""
  try:
    spec = importlib.util.find_spec('gan_aec.configs')
  except ImportError:
    spec = None
  if spec is not None and spec.submodule_search_locations:
    return list(spec.submodule_search_locations)[0]
  return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))), 'configs')


def known_configs() -> list[str]:
  """The names of the shipped configs (vae, dcgan, ...)."""
  return sorted(name[:-3] for name in os.listdir(configs_dir())
                if name.endswith('.py') and not name.startswith('_'))


def resolve(spec: str) -> str:
  """A --config value -> 'PATH[:VARIANTS]' of an existing config file.

  `vae:smoke` (a shipped config's name) and `configs/vae.py:smoke` (its path in a checkout, or
  the installed copy when run from elsewhere) both name configs/vae.py; any other path is a
  config file of yours. ConfigError, naming the shipped configs, when there is no such file.
  """
  path, sep, variants = spec.partition(':')
  if os.path.isfile(path):
    return spec
  name = os.path.basename(path).removesuffix('.py')
  shipped = os.path.join(configs_dir(), f'{name}.py')
  if path in (name, f'configs/{name}.py') and os.path.isfile(shipped):
    return shipped + sep + variants
  raise ConfigError(f'No config file {path!r}. Name a shipped config '
                    f'({", ".join(known_configs())}; e.g. --config=vae:smoke) or give the path of '
                    'a config file.')


def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a shipped config (`vae`) or a config file (a path ending in .py)."""
  path = resolve(name)
  spec = importlib.util.spec_from_file_location(f'gan_aec_config_{os.path.basename(path)[:-3]}',
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def check_override(config: ml_collections.ConfigDict, name: str, text: str) -> str | None:
  """Why `--config.<name>=<text>` cannot apply to `config` (a one-line message), or None.

  Checked here, before the flags are parsed, so that every such mistake has our message (the
  field that does not exist, the closest fields that do; the value that is not of the field's
  type) rather than depending on the wording of ml_collections' exceptions.
  """
  flag = f'--config.{name}'
  node, parts = config, name.split('.')
  for depth, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      where = 'config' + ''.join(f'.{p}' for p in parts[:depth])
      fields = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      close = difflib.get_close_matches(part, fields, n=1)
      hint = f' Did you mean {close[0]!r}?' if close else ''
      return (f'{flag}: {where} has no field {part!r}.{hint} Overrides can only set fields the '
              'config file defines (see the config file, or a run\'s config.json).')
    if depth < len(parts) - 1:
      node = node[part]
  field_type = node.get_type(parts[-1])
  if text is None or field_type in (None, type(None), str, ml_collections.ConfigDict):
    return None
  try:
    if field_type is bool:
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(text)
    elif field_type in (int, float):
      field_type(text) if field_type is float else int(text)
    elif field_type in (tuple, list):
      value = ast.literal_eval(text)
      if not isinstance(value, (tuple, list)):
        raise ValueError(text)
  except (ValueError, SyntaxError):
    return (f'{flag}={text}: not a valid {field_type.__name__} '
            f'(the field holds {node[parts[-1]]!r}).')
  return None
