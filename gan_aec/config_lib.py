"""Pieces every config shares: the dataset block and the smoke-size overrides for tests and CI."""

from __future__ import annotations

import importlib.util
import os

import ml_collections


def dataset_config(name: str = 'mnist') -> ml_collections.ConfigDict:
  """The `config.dataset` block."""
  dataset = ml_collections.ConfigDict()
  dataset.name = name  # 'mnist' (28x28 grey) or 'celeb_a' (RGB faces; channels follow the data).
  dataset.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data dir; None = default.
  # No `mnist` in data_dir and no network: train on the bundled 10,000 real test digits
  # (8,000 train / 2,000 test) with a warning. False: stop with the offline-import command instead.
  dataset.offline_fallback = True
  dataset.download = True  # Let TFDS download when the data is missing and the server answers.
  # CelebA only: where the decoded, cropped and resized splits are cached as uint8 .npy files
  # (default: <data_dir>/gan_aec_cache).
  dataset.cache_dir = ml_collections.FieldReference(None, field_type=str)
  # Filled in by the run: 'tfds' or (MNIST only) 'bundled_mnist_t10k'. Recorded in config.json and metrics.jsonl.
  dataset.source = ml_collections.FieldReference(None, field_type=str)
  return dataset


def sample_metrics_config() -> ml_collections.ConfigDict:
  """The `config.sample_metrics` block of the generative models (see gan_aec.sample_quality)."""
  block = ml_collections.ConfigDict()
  # A configs/mnist_classifier.py workdir, or python:package.module:function (a network you supply,
  # see gan_aec.feature_extractor). Set: FID, KID, precision/recall, density/coverage and class
  # statistics at every evaluation, and the best-FID state kept in WORKDIR/best_checkpoint.
  # None: none of these.
  block.extractor = ml_collections.FieldReference(None, field_type=str)
  block.num_samples = 10_000  # N generated and N real test images (fewer if the split is smaller).
  return block


COMPUTE_DTYPES = ('float32', 'bfloat16')


def compute_dtype(config: ml_collections.ConfigDict):
  """`config.compute_dtype` ('float32' when absent) as a JAX dtype; ValueError if unsupported."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  name = config.get('compute_dtype', 'float32')
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {name!r}.')
  return jnp.dtype(name)


def add_loop_fields(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Loop settings every config shares, with their defaults."""
  # Evaluate the untrained model at step 0 (the start of every eval curve). Turn off when an
  # evaluation is expensive, e.g. the VAE's IWAE bound with 1,000 samples.
  config.eval_at_start = True
  # Resuming a workdir whose config.json differs in a field that defines the experiment (model,
  # data, optimiser, batch size, seed, ...) is an error unless this is True; see gan_aec.workdir.
  config.allow_config_change = False
  return config


def apply_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to seconds of work: for tests and CI, never for numbers."""
  config.batch_size = 8
  config.eval_batch_size = 64
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 2
  return config


CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of configs/<name>.py (name may also be a path to a config file)."""
  path = name if name.endswith('.py') else os.path.join(CONFIGS_DIR, f'{name}.py')
  if not os.path.exists(path):
    raise FileNotFoundError(f'No config file {path}.')
  spec = importlib.util.spec_from_file_location(f'gan_aec_config_{os.path.basename(path)[:-3]}',
                                                path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
