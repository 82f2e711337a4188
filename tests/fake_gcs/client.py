"""``FakeGCSFileSystem``: fsspec's ``gs://`` protocol served by ``server.FakeGCS`` (its URL from
``TENSORSTORE_GCS_HTTP_URL``, the variable TensorStore reads too), so etils.epath reaches it exactly as it reaches
GCS through gcsfs. Object-store semantics, strictly: no rename, move or copy (a job that needs one would break on
a real bucket's atomicity, so here it fails loudly); directories exist only as name prefixes; a file written is
uploaded as one object when closed."""

from __future__ import annotations

import io
import json
import os
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

from fsspec import AbstractFileSystem, register_implementation


class _Upload(io.BytesIO):
    def __init__(self, fs: FakeGCSFileSystem, path: str):
        super().__init__()
        self._fs, self._path = fs, path

    def close(self) -> None:
        if not self.closed:
            self._fs._put(self._path, self.getvalue())
        super().close()


class FakeGCSFileSystem(AbstractFileSystem):
    protocol = ("gs", "gcs")
    root_marker = ""

    @property
    def _url(self) -> str:
        return os.environ["TENSORSTORE_GCS_HTTP_URL"]

    @classmethod
    def _strip_protocol(cls, path):
        path = str(path)
        for p in ("gs://", "gcs://"):
            if path.startswith(p):
                path = path[len(p):]
        return path.rstrip("/")

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        bucket, _, name = path.partition("/")
        return bucket, name

    def _request(self, method: str, url: str, data: bytes | None = None) -> bytes | None:
        req = urllib.request.Request(self._url + url, data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise OSError(f"fake GCS: {method} {url}: HTTP {e.code}") from e

    def _put(self, path: str, data: bytes) -> None:
        bucket, name = self._split(self._strip_protocol(path))
        self._request("POST", f"/upload/storage/v1/b/{bucket}/o?" + urlencode({"uploadType": "media", "name": name}),
                      data)

    def _list(self, path: str, delimiter: str = "/") -> tuple[list[dict], list[str]]:
        bucket, name = self._split(path)
        prefix = f"{name}/" if name else ""
        items, prefixes, token = [], [], ""
        while True:
            q = {"prefix": prefix, "delimiter": delimiter, "pageToken": token}
            raw = json.loads(self._request("GET", f"/storage/v1/b/{bucket}/o?" + urlencode(q)) or b"{}")
            items += raw.get("items", [])
            prefixes += raw.get("prefixes", [])
            token = raw.get("nextPageToken")
            if not token:
                return items, prefixes

    def _object(self, path: str) -> dict | None:
        bucket, name = self._split(path)
        if not name:
            return None
        raw = self._request("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}")
        return None if raw is None else json.loads(raw)

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if (obj := self._object(path)) is not None:
            return {"name": path, "size": int(obj["size"]), "type": "file", "generation": obj["generation"]}
        if "/" not in path:  # a bucket
            return {"name": path, "size": 0, "type": "directory"}
        items, prefixes = self._list(path)
        if items or prefixes:
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        items, prefixes = self._list(path)
        bucket = self._split(path)[0]
        out = [{"name": f"{bucket}/{o['name']}", "size": int(o["size"]), "type": "file"} for o in items]
        out += [{"name": f"{bucket}/{p.rstrip('/')}", "size": 0, "type": "directory"} for p in prefixes]
        if not out:
            if self._object(path) is not None:
                return [self.info(path)] if detail else [path]
            if "/" in path:
                raise FileNotFoundError(path)
        out.sort(key=lambda e: e["name"])
        return out if detail else [e["name"] for e in out]

    def _open(self, path, mode="rb", **kwargs):
        path = self._strip_protocol(path)
        if mode == "rb":
            bucket, name = self._split(path)
            data = self._request("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media")
            if data is None:
                raise FileNotFoundError(path)
            return io.BytesIO(data)
        if mode == "wb":
            return _Upload(self, path)
        raise NotImplementedError(f"fake GCS: mode {mode!r} (objects are written whole: no appends)")

    def mkdir(self, path, create_parents=True, **kwargs):
        pass  # no directories in an object store

    def makedirs(self, path, exist_ok=False):
        pass

    def rmdir(self, path):
        pass

    def rm_file(self, path):
        bucket, name = self._split(self._strip_protocol(path))
        self._request("DELETE", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}")

    def rm(self, path, recursive=False, maxdepth=None):
        for p in [path] if isinstance(path, str) else path:
            p = self._strip_protocol(p)
            if recursive:
                for o in self._list(p, delimiter="")[0]:
                    self.rm_file(f"{self._split(p)[0]}/{o['name']}")
            self.rm_file(p)

    def mv(self, *args, **kwargs):
        raise NotImplementedError("fake GCS: an object store has no rename (write whole objects instead)")

    rename = mv
    copy = mv
    cp_file = mv


def register() -> None:
    register_implementation("gs", FakeGCSFileSystem, clobber=True)
    register_implementation("gcs", FakeGCSFileSystem, clobber=True)
