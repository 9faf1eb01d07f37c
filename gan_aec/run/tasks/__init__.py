"""Each model family's Task (config -> steps, state, figures), and the registry by model name.

    task = gan_aec.run.tasks.build_task(config)   # config.model picks the family

The registry maps `config.model` to a family's `build_task`, by explicit import; a new family
adds its module here.
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from gan_aec.errors import ConfigError
from gan_aec.run.tasks import autoencoder, classifier, dcgan, vae
from gan_aec.run.tasks.base import Task

__all__ = ['REGISTRY', 'Task', 'build_task']

REGISTRY: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {
    'autoencoder': autoencoder.build_task,
    'denoising_autoencoder': autoencoder.build_task,
    'vae': vae.build_task,
    'dcgan': dcgan.build_task,
    'classifier': classifier.build_task,
}


def build_task(config: ml_collections.ConfigDict) -> Task:
  """The Task of config.model; ConfigError for an unknown model or a setting its family rejects."""
  if config.model not in REGISTRY:
    raise ConfigError(f'Unknown model {config.model!r}; config.model must be one of '
                      f'{sorted(REGISTRY)}.')
  try:
    return REGISTRY[config.model](config)
  except ConfigError:
    raise
  except ValueError as e:  # A family's own check of its fields (loss name, weighting, ...).
    raise ConfigError(str(e)) from e
