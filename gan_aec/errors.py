"""Every error a user can cause and fix, in one place.

The entry points (`python -m gan_aec.main`, `evaluate`, `prepare_data`) print a UserError's
message without a traceback and exit with status 1. Each is raised before anything is written
that the user would regret: a bad config or workdir before the workdir is touched, missing or
malformed data before training starts or anything is imported, a non-finite loss before the
broken state is saved. The message says what is wrong and what to do.
"""


class UserError(Exception):
  """A problem with the config, the data, the workdir or the run's numbers."""


class ConfigError(UserError, ValueError):
  """The config asks for something that cannot run (unknown name, impossible size, ...)."""


class WorkdirMismatchError(UserError):
  """The workdir holds a run of a different config; resuming it would mix two experiments."""


class WorkdirUnusableError(UserError, OSError):
  """The workdir cannot be written (permissions, a file in the way) or its disk is too full."""


class CheckpointError(UserError):
  """A checkpoint cannot be restored (corrupt, truncated, or of another model)."""


class NonFiniteError(UserError, FloatingPointError):
  """A loss or metric became NaN or Inf; the broken state was not saved."""


class DatasetUnavailableError(UserError, RuntimeError):
  """The requested dataset is not in the data dir and cannot be downloaded or substituted."""


class DataFormatError(UserError, ValueError):
  """A dataset file given for import is missing, truncated or not what its name says."""


class IdxFormatError(DataFormatError):
  """An MNIST IDX file is missing, truncated or not what its name says."""


class CelebAFormatError(DataFormatError):
  """A CelebA release file is missing or malformed; nothing was written."""


class DataImportError(UserError, ValueError):
  """The source files cannot be imported as asked (e.g. a partial MNIST without --holdout);
  nothing was written."""


class ExtractorError(UserError, ValueError):
  """A feature-extractor spec names nothing usable."""
