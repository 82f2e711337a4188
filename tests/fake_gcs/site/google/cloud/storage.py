"""Stands in for google-cloud-storage (not installed here) in processes on the fake GCS: Orbax asks it one
question about a gs:// checkpoint dir, whether the bucket has a hierarchical namespace; the answer comes from the
fake server's bucket resource (never: it is a flat store). Only on PYTHONPATH via ``tests/fake_gcs/site``."""

import json
import os
import urllib.request


class Bucket:
    def __init__(self, name: str, resource: dict):
        self.name = name
        self.hierarchical_namespace_enabled = bool(resource.get("hierarchicalNamespace", {}).get("enabled"))


class Client:
    def get_bucket(self, name: str) -> Bucket:
        url = f"{os.environ['TENSORSTORE_GCS_HTTP_URL']}/storage/v1/b/{name}"
        with urllib.request.urlopen(url, timeout=60) as r:
            return Bucket(name, json.loads(r.read()))
