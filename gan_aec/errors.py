"""Errors a user can cause and fix. `gan_aec.main` prints their message (no traceback) and exits 1.

Each is raised before the run writes anything it would regret: a bad config or workdir before the
workdir is touched, missing data before training starts, a non-finite loss before the broken state
is saved.
"""


class UserError(Exception):
  """A problem with the config, the data, the workdir or the run's numbers; the message says what
  is wrong and what to do."""


class ConfigError(UserError, ValueError):
  """The config asks for something that cannot run (unknown name, impossible size, ...)."""


class WorkdirMismatchError(UserError):
  """The workdir holds a run of a different config; resuming it would mix two experiments."""


class CheckpointError(UserError):
  """The latest checkpoint cannot be restored (corrupt, truncated, or of another model)."""


class NonFiniteError(UserError, FloatingPointError):
  """A loss or metric became NaN or Inf; the broken state was not saved."""
