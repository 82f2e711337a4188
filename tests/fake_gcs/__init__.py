"""A fake Google Cloud Storage for tests: objects in memory behind the GCS JSON API over local HTTP.

Both ways a job reaches ``gs://`` go to it: TensorStore (Orbax's arrays) through its own GCS driver, pointed here
by ``TENSORSTORE_GCS_HTTP_URL``; everything else (etils.epath, so the run-dir layer and Orbax's metadata) through
fsspec's ``gs``/``gcs`` protocol, which ``client.FakeGCSFileSystem`` takes over in processes that set
``MRT_FAKE_GCS`` (``site/sitecustomize.py``). It is an object store: flat names, no directories, no rename, no
appends, whole objects only, generation preconditions as GCS has them.
"""

import contextlib
import os

SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUCKET = "mrt-test-bucket"


def child_env(url: str, base: dict | None = None) -> dict:
    """Environment for a child process whose gs:// paths reach the fake server at ``url``."""
    env = dict(os.environ if base is None else base)
    env.update(MRT_FAKE_GCS="1", TENSORSTORE_GCS_HTTP_URL=url, GOOGLE_AUTH_TOKEN_FOR_TESTING="fake",
               EPATH_USE_TF="false", PYTHONPATH=os.pathsep.join([ROOT, SITE]))
    return env


_ENV = ("TENSORSTORE_GCS_HTTP_URL", "GOOGLE_AUTH_TOKEN_FOR_TESTING", "EPATH_USE_TF")


@contextlib.contextmanager
def serving():
    """A fake GCS server, also reachable from this process (fsspec's gs:// and TensorStore's GCS driver point at
    it) for the duration; yields the ``server.FakeGCS``. Undone on exit, so other tests see the real gs://."""
    import importlib
    import sys

    from etils.epath import backend

    from tests.fake_gcs.client import register
    from tests.fake_gcs.server import FakeGCS

    fsspec_registry = importlib.import_module("fsspec.registry")  # the module (fsspec.registry is a mapping view)
    srv = FakeGCS()
    backend.fsspec_backend._get_filesystem.cache_clear()  # epath keeps one filesystem per scheme
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(TENSORSTORE_GCS_HTTP_URL=srv.url, GOOGLE_AUTH_TOKEN_FOR_TESTING="fake", EPATH_USE_TF="false")
    sys.path.append(SITE)  # google.cloud.storage's stand-in, for Orbax
    register()
    try:
        yield srv
    finally:
        srv.close()
        sys.path.remove(SITE)
        for proto in ("gs", "gcs"):
            fsspec_registry._registry.pop(proto, None)
        backend.fsspec_backend._get_filesystem.cache_clear()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
