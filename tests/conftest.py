"""Test setup: 8 fake CPU devices, set before anything imports jax; one XLA cache shared by child processes."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

# Many tests start the job (or its peers) as child processes that compile the same tiny programs. One persistent
# compilation cache for the whole session turns each later start's compiles into cache reads (a 4-step tiny job:
# 40 s cold, 11 s warm). Set after `import jax`, so only children see it. Results do not change: a cached
# executable is the same binary the compiler would produce (the determinism tests compare runs bit for bit).
_XLA_CACHE = tempfile.mkdtemp(prefix="mrt-tests-xla-")
atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _XLA_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Property tests explore new random examples on every developer run, but CI replays the same ones (derandomize):
# a red CI then means the change broke something, not that hypothesis drew a new example. Counterexamples found
# locally become explicit tests.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):  # as the other CI-only checks of the tests read it
    _hypothesis_settings.load_profile("ci")
