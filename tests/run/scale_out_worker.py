r"""Trains smoke configs in this process: run by the scale-out tests under a forced device count.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \
      python -m tests.run.scale_out_worker ROOT MODEL...

Each MODEL's smoke config trains 4 steps on the bundled digits into ROOT/MODEL (no network),
checkpointing every 2 and evaluating at the end.
"""

import sys

from gan_aec.run import config as config_lib, loop


def smoke_config(model: str, steps: int = 4):
  config = config_lib.load_config(model, 'smoke')
  config.dataset.download = False
  config.num_train_steps = steps
  config.eval_at_start = False
  config.eval_every_steps = 4
  # Every model data-parallel over all devices, also the DCGAN (on CPU it normally trains as one
  # device using all cores): these tests check that sharding, BatchNorm included, is invisible.
  if 'cpu_data_parallel' in config:
    config.cpu_data_parallel = True
  return config


def main(root: str, models: list[str]) -> None:
  for model in models:
    loop.train_and_evaluate(smoke_config(model), f'{root}/{model}')


if __name__ == '__main__':
  main(sys.argv[1], sys.argv[2:])
