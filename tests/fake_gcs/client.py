"""``FakeGCSFileSystem``: fsspec's ``gs://`` protocol served by ``server.FakeGCS`` (its URL from
``TENSORSTORE_GCS_HTTP_URL``, the variable TensorStore reads too), so etils.epath reaches it exactly as it reaches
GCS through gcsfs. Object-store semantics, strictly: no rename, move or copy (a job that needs one would break on
a real bucket's atomicity, so here it fails loudly); directories exist only as name prefixes; a file written is
uploaded as one object when closed.

Listings are cached as gcsfs caches them by default (``use_listings_cache=True``): a dir's listing answers later
``ls``/``info``/``exists``/``open`` calls of this instance, so objects that another process writes or deletes under a
dir this instance has listed stay unseen (a new object: "not found") until this instance writes there itself (which
invalidates the dir and its parents) or the cache is off (``use_listings_cache=False``, what ``mrt_jax.run_files``
configures). A job whose processes poll each other's files must see them here as on a real bucket."""

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
        self.invalidate_cache(path)

    def invalidate_cache(self, path=None):
        """As gcsfs: drop the cached listings of ``path`` and of every dir above it (all, without a path)."""
        if path is None:
            self.dircache.clear()
            return
        path = self._strip_protocol(path)
        while path:
            self.dircache.pop(path, None)
            path = self._parent(path)

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
        if "/" not in path:  # a bucket
            return {"name": path, "size": 0, "type": "directory"}
        if self._parent(path) in self.dircache:  # as gcsfs: the parent's cached listing answers first
            for entry in self.dircache[self._parent(path)]:
                if entry["name"] == path:
                    return entry
        if self._ls_from_cache(path):  # raises FileNotFoundError if the parent's cached listing lacks it
            return {"name": path, "size": 0, "type": "directory"}
        if (obj := self._object(path)) is not None:
            return {"name": path, "size": int(obj["size"]), "type": "file", "generation": obj["generation"]}
        items, prefixes = self._list(path)
        if items or prefixes:
            return {"name": path, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        try:
            cached = self._ls_from_cache(path)
        except FileNotFoundError:
            if "/" in path:
                raise
            cached = None
        # as gcsfs: a cached listing of the dir is the answer (the parent's entry for the dir itself is not)
        if cached and not any(e["name"] == path and e["type"] == "directory" for e in cached):
            out = cached
        else:
            items, prefixes = self._list(path)
            bucket = self._split(path)[0]
            out = [{"name": f"{bucket}/{o['name']}", "size": int(o["size"]), "type": "file",
                    "generation": o["generation"]} for o in items]
            out += [{"name": f"{bucket}/{p.rstrip('/')}", "size": 0, "type": "directory"} for p in prefixes]
            if not out:
                if self._object(path) is not None:
                    return [self.info(path)] if detail else [path]
                if "/" in path:
                    raise FileNotFoundError(path)
                return []
            out.sort(key=lambda e: e["name"])
            self.dircache[path] = out
        return out if detail else [e["name"] for e in out]

    def _open(self, path, mode="rb", **kwargs):
        path = self._strip_protocol(path)
        if mode == "rb":
            self.info(path)  # as gcsfs's file: its details come through the listing cache
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
        self.invalidate_cache(path)

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
