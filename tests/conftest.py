"""Session-wide test settings, applied before any test module imports JAX."""

import os
import shutil
import tempfile

# One persistent XLA compilation cache for the whole suite and the processes it starts: the same
# smoke-config steps are compiled by many tests, and each compile costs seconds on 2 cores.
# (Results are the same either way; only compile time changes.)
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'gan_aec_tests_jax_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
# The suite compiles hundreds of small programs and runs each for a few steps: XLA's optimisation
# passes cost more than they save (the quick tier of the autoencoder: 130 s -> 76 s). Tests compare
# runs made the same way, and hand computations to float tolerance; speed is the benchmark's.
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', '1')
# TFDS's default data dir: an empty folder of this session, so that runs which name no data dir
# train on the bundled digits (as on a fresh offline machine), whatever this machine has in
# ~/tensorflow_datasets. (A data dir a run names must hold its dataset.)
# The process that makes it (pytest itself; its xdist workers inherit it) removes it at the end.
_OWN_TFDS_DATA_DIR = None
if 'TFDS_DATA_DIR' not in os.environ:
  _OWN_TFDS_DATA_DIR = os.environ['TFDS_DATA_DIR'] = tempfile.mkdtemp(prefix='gan_aec_tests_tfds_')
# gs:// paths through gcsfs (the `gcs` extra), which the bucket test points at a local emulator;
# with TensorFlow installed etils would otherwise pick TensorFlow's GCS client, once per process.
os.environ.setdefault('EPATH_USE_TF', 'false')


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _OWN_TFDS_DATA_DIR:
    shutil.rmtree(_OWN_TFDS_DATA_DIR, ignore_errors=True)
