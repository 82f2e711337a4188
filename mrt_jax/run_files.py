"""The run dir's one path layer: every file the job writes or reads in ``--run_dir`` goes through here, so a
bucket path (``gs://BUCKET/runs/x``) works like a local dir instead of becoming a local ``./gs:/...`` folder.

Built on ``etils.epath`` rather than bare fsspec: Orbax reaches ``gs://`` through epath already (its metadata,
listings, commit markers), so the job's own files and its checkpoints take the same route (fsspec's gcsfs, or
tf.io.gfile where TensorFlow is installed) and one registered filesystem serves both. Local paths stay plain files.

Object stores have no atomic rename and no append: a file is written as one whole object (GCS shows an object
only once its upload completes, so readers never see half of it); locally the same call writes a temporary file
and renames it. Tools that need a local directory (TensorBoard's writer, matplotlib) write to a local staging dir
that ``upload_tree`` copies into the run dir.

Listings are always fresh. fsspec's object-store filesystems (gcsfs, s3fs, adlfs) cache each dir's listing by
default and answer later listings, ``exists`` and opens from it, so what another process writes or deletes under
a dir listed once stays unseen. The job's processes poll each other's files (the disaggregated learner and
samplers; Orbax's step listings), so the first URL made here switches that cache off for every filesystem fsspec
makes afterwards, Orbax's included (it reaches the store through the same epath filesystems).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from etils import epath

from mrt_jax.errors import UserError

# The URL schemes etils.epath dispatches to a filesystem; it takes any other "x://" for a local path.
REMOTE_SCHEMES = ("gs", "s3", "az", "hf")
# fsspec protocol names of the object stores above whose listings must not be cached (see the module docstring).
_UNCACHED_PROTOCOLS = ("gcs", "gs", "s3", "az", "abfs")
_listings_fresh = False


def _fresh_listings() -> None:
    """Once per process (on the first URL, so local runs never import fsspec): ``use_listings_cache=False`` for
    the object-store filesystems fsspec makes from now on, and drop those epath already made (it keeps one per
    scheme), so the next use makes them anew with the setting."""
    global _listings_fresh
    if _listings_fresh:
        return
    try:
        import fsspec.config
    except ImportError:  # no fsspec: epath reaches no object store through it, and there is no cache to switch off
        return
    for protocol in _UNCACHED_PROTOCOLS:
        fsspec.config.conf.setdefault(protocol, {})["use_listings_cache"] = False
    from etils.epath import backend

    made = getattr(getattr(backend, "fsspec_backend", None), "_get_filesystem", None)
    if hasattr(made, "cache_clear"):
        made.cache_clear()
    _listings_fresh = True


def is_remote(path: str | os.PathLike) -> bool:
    """A URL (``gs://``, ``s3://``, ...) rather than a local path."""
    return "://" in os.fspath(path)


def run_path(path: str | os.PathLike, *parts: str) -> epath.Path:
    """``path`` (joined with ``parts``) as an epath: absolute when local (Orbax refuses relative paths, e.g. a
    user's ``--run_dir=runs/x``), a URL kept as it is."""
    text = os.fspath(path)
    if is_remote(text) and text.split("://", 1)[0] not in REMOTE_SCHEMES:
        raise ValueError(f"{text}: unsupported URL scheme; a local path or one of "
                         + ", ".join(f"{s}://" for s in REMOTE_SCHEMES))
    if is_remote(text):
        _fresh_listings()
    root = epath.Path(text if is_remote(text) else os.path.abspath(text))
    return root.joinpath(*parts) if parts else root


def join(path: str | os.PathLike, *names: str) -> str:
    """``path`` joined with ``names`` as a string, as the user wrote it (not made absolute): for messages and
    for code that passes paths on."""
    text = os.fspath(path)
    if is_remote(text):
        return "/".join([text.rstrip("/"), *names])
    return os.path.join(text, *names)


def basename(path: str | os.PathLike) -> str:
    """The last name of a path or URL (``runs/x/`` -> ``x``)."""
    text = os.fspath(path)
    return text.rstrip("/").rsplit("/", 1)[-1] if is_remote(text) else os.path.basename(os.path.abspath(text))


def isdir(path: str | os.PathLike) -> bool:
    return run_path(path).is_dir()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` as a whole: one object upload remotely; a temporary file and an atomic rename
    locally (other processes may be reading it). Creates the parent dir."""
    path = run_path(path)
    if is_remote(path):
        path.write_bytes(data)
        return
    os.makedirs(path.parent, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, value: Any, **dump_kwargs) -> None:
    write_text(path, json.dumps(value, **dump_kwargs))


def read_bytes(path: str | os.PathLike) -> bytes:
    """Raises FileNotFoundError when missing, locally and remotely."""
    return run_path(path).read_bytes()


def read_text(path: str | os.PathLike) -> str:
    """Raises FileNotFoundError when missing, locally and remotely."""
    return run_path(path).read_text(encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(read_text(path))


def read_jsonl(path: str | os.PathLike) -> list:
    """The values of a JSON-lines file (``metrics.jsonl``), blank lines skipped: the file is read whole (one GET
    on a bucket) rather than streamed line by line."""
    return [json.loads(line) for line in read_text(path).splitlines() if line.strip()]


def exists(path: str | os.PathLike) -> bool:
    return run_path(path).exists()


def listdir(path: str | os.PathLike) -> list[str]:
    """Names directly under ``path`` (files and dirs; on an object store, dirs are name prefixes); [] if none."""
    try:  # no exists() first: on a bucket a dir is a name prefix that can vanish in between
        return sorted(p.name for p in run_path(path).iterdir())
    except FileNotFoundError:
        return []


def remove(path: str | os.PathLike, *, missing_ok: bool = False) -> None:
    """Delete one file (one object on a bucket)."""
    run_path(path).unlink(missing_ok=missing_ok)


def makedirs(path: str | os.PathLike) -> None:
    """``mkdir -p`` locally; on an object store there are no dirs, and this is a no-op in effect."""
    run_path(path).mkdir(parents=True, exist_ok=True)


def upload_tree(local_dir: str | os.PathLike, dest: str | os.PathLike, *, only_changed: dict | None = None) -> None:
    """Copy every file under ``local_dir`` to ``dest`` (same relative names), each as a whole object.
    ``only_changed``: a dict the caller keeps between calls (name -> size, mtime): files unchanged since the last
    call are skipped."""
    for root, _, files in os.walk(local_dir):
        for name in files:
            src = os.path.join(root, name)
            rel = os.path.relpath(src, local_dir)
            if only_changed is not None:
                st = os.stat(src)
                if only_changed.get(rel) == (st.st_size, st.st_mtime_ns):
                    continue
                only_changed[rel] = (st.st_size, st.st_mtime_ns)
            with open(src, "rb") as f:
                write_bytes(run_path(dest, *rel.split(os.sep)), f.read())


class Staging:
    """A local directory for writers that need one: ``dest`` itself when it is local; otherwise a temporary dir
    whose files ``sync()`` uploads to ``dest`` (and ``close()`` uploads a last time, then removes)."""

    def __init__(self, dest: str | os.PathLike):
        self.dest = dest
        self.remote = is_remote(dest)
        self._seen: dict = {}
        if self.remote:
            self.local = tempfile.mkdtemp(prefix="mrt-staging-")
        else:
            self.local = os.fspath(run_path(dest))
            os.makedirs(self.local, exist_ok=True)

    def sync(self) -> None:
        if self.remote:
            upload_tree(self.local, self.dest, only_changed=self._seen)

    def close(self) -> None:
        if self.remote:
            import shutil

            self.sync()
            shutil.rmtree(self.local, ignore_errors=True)

    def __enter__(self) -> str:
        return self.local

    def __exit__(self, *exc) -> None:
        self.close()


def move_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move a directory: a rename locally; on an object store (no rename) a copy of every object, then delete."""
    src, dst = run_path(src), run_path(dst)
    if not is_remote(src):
        src.rename(dst)
        return
    for rel in _files_under(src):
        write_bytes(dst.joinpath(*rel), src.joinpath(*rel).read_bytes())
    src.rmtree()


def _files_under(path: epath.Path, rel: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for child in path.iterdir():
        out += _files_under(child, (*rel, child.name)) if child.is_dir() else [(*rel, child.name)]
    return out


def check_writable(run_dir: str | os.PathLike, flag: str = "--run_dir") -> None:
    """Create ``run_dir`` (locally) and check that files can be written there; a one-line UserError otherwise
    (no filesystem for the URL's scheme, a local path that is a file or not writable, a bucket refusing writes)."""
    try:
        probe = run_path(run_dir, f".write_check.{os.getpid()}")
        if os.fspath(run_dir).startswith("gs://"):
            import google.cloud.storage  # noqa: F401  (Orbax asks it about gs:// checkpoint dirs)
        makedirs(run_dir)
        write_bytes(probe, b"")
        probe.unlink()
    except (OSError, ImportError, ValueError, NotImplementedError) as e:
        hint = ""
        if is_remote(run_dir) and isinstance(e, (ImportError, ValueError)):
            hint = " (gs:// run dirs need gcsfs and google-cloud-storage: pip install 'mrt-jax[gcs]')"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{flag}={os.fspath(run_dir)!r} cannot be written: {first}{hint}") from e
