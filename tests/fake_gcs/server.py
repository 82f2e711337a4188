"""The GCS JSON API subset that TensorStore's ``gcs`` driver and ``client.FakeGCSFileSystem`` use, served from
memory on 127.0.0.1: object media/metadata GET (with byte ranges and generation preconditions), media upload,
delete, and prefix/offset listing. One object store per server; buckets spring into being on first write."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit


class Store:
    def __init__(self):
        self.objects: dict[tuple[str, str], tuple[int, bytes]] = {}  # (bucket, name) -> (generation, data)
        self.lock = threading.Lock()
        self.log: list[str] = []  # "METHOD name" of every request, for tests that look at the traffic
        self._gen = 0

    def next_generation(self) -> int:
        self._gen = max(self._gen + 1, time.time_ns() // 1000)
        return self._gen


def _meta(bucket: str, name: str, gen: int, data: bytes) -> dict:
    return {"kind": "storage#object", "bucket": bucket, "name": name, "generation": str(gen),
            "metageneration": "1", "size": str(len(data)), "contentType": "application/octet-stream",
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(gen / 1e6)),
            "timeCreated": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(gen / 1e6)),
            "id": f"{bucket}/{name}/{gen}", "selfLink": f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if code not in (204, 304):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if code not in (204, 304) and self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, value: dict, headers: dict | None = None):
        self._send(code, json.dumps(value).encode(), headers)

    def _error(self, code: int, message: str):
        self._json(code, {"error": {"code": code, "message": message}})

    def _route(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = url.path.split("/")
        # /storage/v1/b/<bucket>/o[/<object>]   or   /upload/storage/v1/b/<bucket>/o
        if url.path.startswith("/upload/storage/v1/b/") and len(parts) >= 7:
            return "upload", unquote(parts[5]), q.get("name"), q
        if url.path.startswith("/storage/v1/b/") and len(parts) >= 6 and parts[5] == "o":
            name = unquote("/".join(parts[6:])) if len(parts) > 6 and parts[6] else None
            return "object", unquote(parts[4]), name, q
        if url.path.startswith("/storage/v1/b/") and len(parts) == 5:
            return "bucket", unquote(parts[4]), None, q
        return None, None, None, q

    def _precondition(self, current: int | None, q: dict) -> bool:
        if "ifGenerationMatch" in q and int(q["ifGenerationMatch"]) != (current or 0):
            return False
        return True

    def do_GET(self):
        kind, bucket, name, q = self._route()
        s = self.store
        s.log.append(f"GET {name if name is not None else kind}")
        if kind == "bucket":
            return self._json(200, {"kind": "storage#bucket", "name": bucket, "id": bucket})
        if kind != "object":
            return self._error(404, "no such route")
        if name is None:
            return self._list(bucket, q)
        with s.lock:
            entry = s.objects.get((bucket, name))
        if entry is None:
            return self._error(404, f"No such object: {bucket}/{name}")
        gen, data = entry
        if not self._precondition(gen, q):
            return self._error(412, "precondition failed")
        if "ifGenerationNotMatch" in q and int(q["ifGenerationNotMatch"]) == gen:
            return self._send(304, headers={"x-goog-generation": str(gen)})
        headers = {"x-goog-generation": str(gen), "x-goog-metageneration": "1", "ETag": f'"{gen}"'}
        if q.get("alt") != "media":
            return self._json(200, _meta(bucket, name, gen, data), headers)
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            first, _, last = rng[6:].partition("-")
            if first == "":  # suffix range
                lo, hi = max(0, len(data) - int(last)), len(data) - 1
            else:
                lo, hi = int(first), (int(last) if last else len(data) - 1)
            if lo >= len(data) and len(data) > 0:
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            hi = min(hi, len(data) - 1)
            headers["Content-Range"] = f"bytes {lo}-{hi}/{len(data)}"
            return self._send(206, data[lo:hi + 1], headers, "application/octet-stream")
        return self._send(200, data, headers, "application/octet-stream")

    do_HEAD = do_GET

    def _list(self, bucket: str, q: dict):
        prefix, delim = q.get("prefix", ""), q.get("delimiter", "")
        start, end = q.get("startOffset", ""), q.get("endOffset")
        token = q.get("pageToken", "")
        limit = int(q.get("maxResults", 1000))
        with self.store.lock:
            names = sorted(n for (b, n) in self.store.objects if b == bucket)
            entries = {n: self.store.objects[(bucket, n)] for n in names}
        items, prefixes = [], []
        for n in names:
            if not n.startswith(prefix) or n < start or (end is not None and end != "" and n >= end) or n <= token:
                continue
            if delim:
                cut = n.find(delim, len(prefix))
                if cut >= 0:
                    p = n[:cut + len(delim)]
                    if p not in prefixes:
                        prefixes.append(p)
                    continue
            items.append(n)
        out: dict = {"kind": "storage#objects"}
        if len(items) > limit:
            items = items[:limit]
            out["nextPageToken"] = items[-1]
        if items:
            out["items"] = [_meta(bucket, n, *entries[n]) for n in items]
        if prefixes:
            out["prefixes"] = prefixes
        return self._json(200, out)

    def do_POST(self):
        kind, bucket, name, q = self._route()
        s = self.store
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        s.log.append(f"POST {name}")
        if kind != "upload" or q.get("uploadType") != "media" or not name:
            return self._error(400, f"only uploadType=media uploads are served, got {self.path}")
        with s.lock:
            current = s.objects.get((bucket, name))
            if not self._precondition(current[0] if current else None, q):
                return self._error(412, "precondition failed")
            gen = s.next_generation()
            s.objects[(bucket, name)] = (gen, data)
        return self._json(200, _meta(bucket, name, gen, data))

    def do_DELETE(self):
        kind, bucket, name, q = self._route()
        s = self.store
        s.log.append(f"DELETE {name}")
        with s.lock:
            current = s.objects.get((bucket, name))
            if current is None:
                return self._error(404, f"No such object: {bucket}/{name}")
            if not self._precondition(current[0], q):
                return self._error(412, "precondition failed")
            del s.objects[(bucket, name)]
        return self._send(204)


class FakeGCS:
    """A running server: ``url`` for TENSORSTORE_GCS_HTTP_URL, ``store`` to look inside; ``close()`` stops it."""

    def __init__(self):
        self.store = Store()
        handler = type("Handler", (_Handler,), {"store": self.store})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def names(self, bucket: str) -> list[str]:
        with self.store.lock:
            return sorted(n for (b, n) in self.store.objects if b == bucket)

    def read(self, bucket: str, name: str) -> bytes:
        """An object's bytes (KeyError if absent): what the store holds, not what a client says it holds."""
        with self.store.lock:
            return self.store.objects[(bucket, name)][1]

    def copy_prefix(self, bucket: str, src: str, dst: str, skip: tuple[str, ...] = ()) -> list[str]:
        """Copy every object named ``src/REST`` to ``dst/REST`` (new generations), leaving out those whose REST
        starts with one of ``skip``; the copies' names, sorted. A test's setup, done in the store (no request)."""
        src, dst = src.rstrip("/") + "/", dst.rstrip("/") + "/"
        with self.store.lock:
            rests = sorted(n[len(src):] for (b, n) in self.store.objects if b == bucket and n.startswith(src))
            rests = [r for r in rests if not r.startswith(skip)]
            objects = self.store.objects
            for r in rests:
                objects[(bucket, dst + r)] = (self.store.next_generation(), objects[(bucket, src + r)][1])
        return [dst + r for r in rests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
