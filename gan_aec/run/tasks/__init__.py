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
from gan_aec.run.tasks.base import Drawing, Task

__all__ = ['REGISTRY', 'Drawing', 'Task', 'build_task', 'resolve_defaults']

REGISTRY: dict[str, Callable[[ml_collections.ConfigDict], Task]] = {
    'autoencoder': autoencoder.build_task,
    'denoising_autoencoder': autoencoder.build_task,
    'vae': vae.build_task,
    'dcgan': dcgan.build_task,
    'classifier': classifier.build_task,
}


def build_task(config: ml_collections.ConfigDict) -> Task:
  """The Task of config.model; ConfigError for an unknown model or a setting its family rejects.
  Fills in the config's derived fields first (resolve_defaults)."""
  if config.model not in REGISTRY:
    raise ConfigError(f'Unknown model {config.model!r}; config.model must be one of '
                      f'{sorted(REGISTRY)}.')
  resolve_defaults(config)
  try:
    return REGISTRY[config.model](config)
  except ConfigError:
    raise
  except ValueError as e:  # A family's own check of its fields (loss name, weighting, ...).
    raise ConfigError(str(e)) from e


# Families whose config has fields left to None, to be resolved from other fields once the
# overrides are in (each writes the value it trains with into the config, so config.json holds it).
_RESOLVERS: dict[str, Callable[[ml_collections.ConfigDict], None]] = {
    'dcgan': dcgan.resolve_defaults,
}


def resolve_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Fills in the fields config.model's family derives from others (e.g. the DCGAN's real_label
  from its loss); returns config, changed in place."""
  resolver = _RESOLVERS.get(config.get('model'))
  if resolver is not None:
    with config.unlocked():
      resolver(config)
  return config
