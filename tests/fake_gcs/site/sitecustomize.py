"""Puts the fake GCS behind fsspec's gs:// in a child process (a job under test): a test that runs the job with
its run dir on the fake store adds this folder to PYTHONPATH and sets MRT_FAKE_GCS=1 (``tests/fake_gcs/__init__``).
"""

import os

if os.environ.get("MRT_FAKE_GCS"):
    from tests.fake_gcs.client import register

    register()
