"""SIGTERM and SIGINT become a request to stop at the next step boundary, after a checkpoint.

Cluster schedulers preempt with SIGTERM and a grace period; a user stops with Ctrl-C. Either way the
training loop finishes the step in flight, saves a checkpoint at that step, and stops with
`Preempted`; `gan_aec.main` then exits with status 128 + the signal number, as a process killed by
that signal would, so schedulers still see an unfinished job. A second Ctrl-C while stopping
interrupts at once (the checkpoints already committed stay loadable).

With several processes (jax.distributed), the processes must stop after the same step, whichever
of them got the signal. SIGTERM is then JAX's preemption notice: JAX's preemption service (on
by default, `jax_enable_preemption_service`) catches it, tells every process, and each learns
from `multihost_utils.reached_preemption_sync_point(step)`, asked after every step, when it has
reached the step they agreed on; no collective runs until then. A Ctrl-C is passed on to it as
a SIGTERM. With the service turned off, the processes agree with an allgather every
MULTIPROCESS_CHECK_EVERY steps.
"""

from __future__ import annotations

import os
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Without JAX's preemption service, agreeing on a stop is a collective that waits for the step in
# flight; doing it every step would serialise host and devices, so they agree every this many.
MULTIPROCESS_CHECK_EVERY = 10


class Preempted(Exception):
  """The run stopped on a signal after saving a checkpoint at `step`."""

  def __init__(self, signum: int, step: int, checkpoint_dir: str):
    self.signum, self.step = signum, step
    super().__init__(f'Stopped by {signal.Signals(signum).name} at step {step}; saved a checkpoint '
                     f'in {checkpoint_dir}. Re-run the same command to resume.')


def _jax_preemption_service() -> bool:
  """Whether JAX's preemption service runs: several processes, and the service not turned off
  (jax.distributed.initialize starts it, and its SIGTERM handler, when the option is on)."""
  return jax.process_count() > 1 and bool(jax.config.jax_enable_preemption_service)


class StopRequests:
  """Context manager: while active, SIGTERM/SIGINT ask the loop to stop instead of killing the
  process; `requested(step)` says, after each step, whether to stop there."""

  def __init__(self):
    self.signum: int | None = None  # The signal this process got.
    self._previous = {}
    self._service = False

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:  # A second signal: stop now.
      raise KeyboardInterrupt(f'second {signal.Signals(signum).name} while stopping')
    self.signum = signum
    if self._service:  # Passed on as JAX's preemption notice (its own SIGTERM handler).
      os.kill(os.getpid(), signal.SIGTERM)

  def __enter__(self) -> 'StopRequests':
    self._service = _jax_preemption_service()
    if jax.process_count() > 1:
      logging.info('A SIGTERM or Ctrl-C to any process stops all %d after the same step (%s).',
                   jax.process_count(), "JAX's preemption service" if self._service else
                   f'an allgather every {MULTIPROCESS_CHECK_EVERY} steps')
    if threading.current_thread() is threading.main_thread():  # Python's rule for handlers.
      for sig in SIGNALS:
        if sig == signal.SIGTERM and self._service:
          continue  # JAX's handler stays: a SIGTERM is its preemption notice.
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def requested(self, step: int) -> int | None:
    """The signal to stop on after `step` (one process's or another's: every process stops at the
    same step), else None. With several processes, every process calls it after every step."""
    if jax.process_count() == 1:
      return self.signum
    if self._service:
      if multihost_utils.reached_preemption_sync_point(step):
        return self.signum or signal.SIGTERM
      return None
    if step % MULTIPROCESS_CHECK_EVERY:
      return None
    signums = multihost_utils.process_allgather(np.int32(self.signum or 0))
    return int(np.max(signums)) or None
