r"""Trains a model from a config file.

  python -m gan_aec.main --config=configs/autoencoder.py --workdir=runs/autoencoder \
      --config.num_train_steps=500

Outputs in WORKDIR: checkpoints/, figures/, metrics.jsonl, TensorBoard events, config.json.
Re-running the same command resumes from the latest checkpoint.
"""

import logging as std_logging

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from gan_aec import train

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and figures.',
                               required=True)
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file (add :VARIANT to pick one).',
                                lock_config=True)


class _QuietLibraries(std_logging.Filter):
  """Drops the INFO chatter of orbax and TFDS (dozens of lines per checkpoint); keeps warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = '/orbax/' in record.pathname or '/tensorflow_datasets/' in record.pathname
    return record.levelno >= std_logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for handler in std_logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())
  config = flags.FLAGS.config
  logging.info('JAX: process %d of %d, devices %s', jax.process_index(), jax.process_count(),
               jax.devices())
  train.train_and_evaluate(config, _WORKDIR.value)


def run():
  """Console-script entry point (`gan-aec-train`), the same as `python -m gan_aec.main`."""
  flags.mark_flags_as_required(['config'])
  app.run(main)


if __name__ == '__main__':
  run()
