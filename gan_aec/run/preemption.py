"""SIGTERM and SIGINT become a request to stop at the next step boundary, after a checkpoint.

Cluster schedulers preempt with SIGTERM and a grace period; a user stops with Ctrl-C. Either way the
training loop finishes the step in flight, saves a checkpoint at that step, and stops with
`Preempted`; `gan_aec.main` then exits with status 128 + the signal number, as a process killed by
that signal would, so schedulers still see an unfinished job. A second signal while stopping
interrupts at once (the checkpoints already committed stay loadable).
"""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# With several processes, agreeing on a stop is a collective that waits for the step in flight;
# doing it every step would serialise host and devices, so they agree every this many steps.
MULTIPROCESS_CHECK_EVERY = 10


class Preempted(Exception):
  """The run stopped on a signal after saving a checkpoint at `step`."""

  def __init__(self, signum: int, step: int, checkpoint_dir: str):
    self.signum, self.step = signum, step
    super().__init__(f'Stopped by {signal.Signals(signum).name} at step {step}; saved a checkpoint '
                     f'in {checkpoint_dir}. Re-run the same command to resume.')


class StopRequests:
  """Context manager: while active, SIGTERM/SIGINT set `signum` instead of killing the process."""

  def __init__(self):
    self.signum: int | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:  # A second signal: stop now.
      raise KeyboardInterrupt(f'second {signal.Signals(signum).name} while stopping')
    self.signum = signum

  def __enter__(self) -> 'StopRequests':
    if threading.current_thread() is threading.main_thread():  # Python's rule for handlers.
      for sig in SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def requested(self, step: int) -> int | None:
    """The signal to stop on after `step`, agreed by every process (any process's signal stops
    them all, at the next step that is a multiple of MULTIPROCESS_CHECK_EVERY)."""
    if jax.process_count() == 1:
      return self.signum
    if step % MULTIPROCESS_CHECK_EVERY:
      return None
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    signums = multihost_utils.process_allgather(np.int32(self.signum or 0))
    return int(np.max(signums)) or None
