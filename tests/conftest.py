"""Session-wide test settings, applied before any test module imports JAX."""

import os
import tempfile

# One persistent XLA compilation cache for the whole suite and the processes it starts: the same
# smoke-config steps are compiled by many tests, and each compile costs seconds on 2 cores.
# (Results are the same either way; only compile time changes.)
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'gan_aec_tests_jax_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
