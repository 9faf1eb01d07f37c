r"""Trains a model from a config file: flags -> gan_aec.run.loop.train_and_evaluate.

  python -m gan_aec.main --config=configs/autoencoder.py --workdir=runs/autoencoder \
      --config.num_train_steps=500
  python -m gan_aec.main --config=vae:smoke --workdir=runs/vae_smoke   # from any directory

`--config` takes a shipped config's name or path (`vae`, `configs/vae.py`), or the path of a
config file of yours, then `:VARIANT[,VARIANT]`.

Outputs in WORKDIR: checkpoints/, figures/, metrics.jsonl, TensorBoard events, config.json.
Re-running the same command resumes from the latest checkpoint.

Exit status: 0 when the run finished; 1 with a one-paragraph `error:` message (no traceback) for
what a user can fix (a bad config or override, missing data, a workdir of another run, a damaged
checkpoint, a non-finite loss); 128 + N after SIGTERM (143) or SIGINT (130), once a checkpoint at
the current step is saved.
"""

import errno
import logging as std_logging
import sys
import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from gan_aec import errors
from gan_aec.run import config as run_config, cpu_devices
# JAX and the training loop are imported in `main`, once the flags and the config have been
# checked (gan_aec.run.config.check): a mistyped config, override or setting is reported in a
# fraction of a second, not after the seconds that importing JAX takes.

_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0, for a multi-process run started by '
    'hand (every process gets the same value). Implies --distributed.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run (with '
                                      '--coordinator_address).')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1 (with '
                                   '--coordinator_address).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Call jax.distributed.initialize() before anything else. Without '
    '--coordinator_address JAX detects the cluster itself (TPU VM pod slices, SLURM, Open MPI).')
_SHUTDOWN_TIMEOUT = flags.DEFINE_integer(
    'shutdown_timeout_s', 3600, 'Multi-process runs: how long a finished process waits for the '
    'others to finish (a straggler writing its last checkpoint, a busy host) before the run '
    'counts as failed.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and figures.',
                               required=True)
config_flags.DEFINE_config_file(
    'config', None, 'A shipped config (vae, dcgan, ...: configs/*.py) or a config file of yours; '
    'add :VARIANT to pick one, e.g. vae:smoke.', lock_config=True)


class _QuietLibraries(std_logging.Filter):
  """Drops the INFO chatter of orbax and TFDS (dozens of lines per checkpoint); keeps warnings.

  Also drops orbax's own report of a failed background save (an error with its traceback): the
  exception reaches `main`, which says what failed in one line (or re-raises what it does not
  know)."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if '/gcsfs/' in record.pathname and 'Could not determine bucket type' in record.getMessage():
      return False  # Repeated for every path of a bucket it cannot classify (e.g. an emulator).
    noisy = '/orbax/' in record.pathname or '/tensorflow_datasets/' in record.pathname
    if '/orbax/' in record.pathname and record.exc_info:
      return False
    return record.levelno >= std_logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  for handler in std_logging.getLogger().handlers:
    handler.addFilter(_QuietLibraries())
  config = flags.FLAGS.config
  try:  # What the config alone can tell, before the seconds that importing JAX takes.
    run_config.check(config)
  except errors.ConfigError as e:
    _fail(str(e))
  import jax  # pylint: disable=g-import-not-at-top
  from gan_aec.run import loop, preemption  # pylint: disable=g-import-not-at-top
  distributed = _DISTRIBUTED.value or _COORDINATOR.value
  try:  # Everything a user's input can stop ends in one `error:` line.
    if distributed:
      initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                             _SHUTDOWN_TIMEOUT.value)
    else:
      cpu_devices.split_for_configs([config])  # One CPU device per core (before JAX starts).
    logging.info('JAX: process %d of %d, devices %s', jax.process_index(), jax.process_count(),
                 jax.devices())
    loop.train_and_evaluate(config, _WORKDIR.value)
  except errors.UserError as e:
    _finish_distributed(distributed)
    _fail(str(e))
  except preemption.Preempted as e:
    _finish_distributed(distributed)
    print(e, file=sys.stderr)
    sys.exit(128 + e.signum)
  except Exception as e:  # pylint: disable=broad-except
    problem = _disk_problem(e)
    if problem is None:
      raise
    _finish_distributed(distributed)
    _fail(f'{problem} while the run wrote to {_WORKDIR.value}; the checkpoints already committed '
          'there are intact: free some space (or fix the workdir) and re-run the same command '
          'to resume from the latest of them.')
  _finish_distributed(distributed)


def _disk_problem(error: BaseException) -> str | None:
  """'No space left on device (...)' or the OSError's own text, when `error` or an error behind
  it is the disk refusing a write (a full disk, a quota, a read-only remount, an I/O error;
  orbax and TensorStore raise those from their own threads, not always as OSError); else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS,
                                                       errno.EIO):
      return text
    if 'No space left on device' in str(error):
      return 'No space left on device (' + text[:200] + ')'
    error = error.__cause__ or error.__context__
  return None


def initialize_distributed(coordinator_address: str | None, num_processes: int | None,
                           process_id: int | None, shutdown_timeout_s: int = 3600) -> None:
  """jax.distributed.initialize, with CPU collectives over gloo (so CPU-only processes, e.g. the
  tests' two local processes, can form one system; GPUs and TPUs use their own collectives)."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             shutdown_timeout_seconds=shutdown_timeout_s)


def _finish_distributed(distributed: bool) -> None:
  """Every process of a multi-process run waits here for the others before JAX shuts down, and
  says so: processes finish seconds to minutes apart (the last checkpoint shard, a busy host),
  and JAX's own shutdown at exit aborts a process that waits longer than its timeout."""
  import jax  # pylint: disable=g-import-not-at-top
  if not distributed or jax.process_count() == 1:
    return
  start, count = time.perf_counter(), jax.process_count()
  logging.info('Process %d finished; waiting for the other %d process(es) to finish (up to %d s, '
               '--shutdown_timeout_s).', jax.process_index(), count - 1, _SHUTDOWN_TIMEOUT.value)
  jax.distributed.shutdown()  # Returns once every process has reached it.
  logging.info('All %d processes finished (waited %.1f s).', count, time.perf_counter() - start)


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(1)


def _resolve_config(argv: list[str]) -> list[str]:
  """argv with --config=NAME[:VARIANTS] pointing at the config file (gan_aec.run.config.resolve)."""
  resolved = []
  for arg in argv:
    if arg.startswith('--config='):
      try:
        arg = '--config=' + run_config.resolve(arg[len('--config='):])
      except errors.ConfigError as e:
        _fail(f'--config: {e}')
    resolved.append(arg)
  return resolved


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, after our own checks of what it would otherwise report as a traceback:
  a config that does not exist, a variant it does not know, an override of a field it does not
  have or with a value of another type (gan_aec.run.config.check_override)."""
  given = next((a for a in argv if a.startswith('--config=')), '--config')
  argv = _resolve_config(argv)
  spec = next((a[len('--config='):] for a in argv if a.startswith('--config=')), None)
  if spec is not None:
    path, _, variants = spec.partition(':')
    try:
      config = run_config.load_config(path, variants or None)
    except (ValueError, errors.ConfigError) as e:  # A config raises ValueError for a variant.
      _fail(f'{given}: {e}')
    for arg in argv:
      if arg.startswith('--config.'):
        name, has_value, text = arg[len('--config.'):].partition('=')
        problem = run_config.check_override(config, name, text if has_value else None)
        if problem:
          _fail(problem)
  try:
    return flags.FLAGS(argv)
  except (flags.Error, ValueError, AttributeError, KeyError, TypeError) as e:
    # Anything the checks above did not foresee: its first line, without a traceback.
    first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
    _fail(first if first.startswith(('flag --', '--')) else f'{given}: {first}')


def run():
  """Console-script entry point (`gan-aec-train`), the same as `python -m gan_aec.main`."""
  flags.mark_flags_as_required(['config'])
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
