"""Refuse to resume a run dir whose stored config differs from the new one (except fields meant to change)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

from mrt_jax.errors import UserError

_MISSING = object()


class ConfigMismatchError(UserError, ValueError):
    """The stored and new configs differ; ``.differences`` lists ``(field, stored, new)``."""

    def __init__(self, message: str, differences: list[tuple[str, Any, Any]]):
        super().__init__(message)
        self.differences = differences


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b.c": value}``; lists/tuples compare as lists (JSON round trips turn tuples into lists)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, prefix=name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def config_differences(
    stored: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[tuple[str, Any, Any]]:
    """``[(field, stored_value, new_value)]`` for every dotted field that differs; a field absent on one side shows
    as ``"<absent>"``. ``ignore`` holds dotted names or glob patterns (``"eval.*"``) that may change on resume."""
    flat_old, flat_new = flatten_config(stored), flatten_config(new)
    patterns = tuple(ignore)
    diffs = []
    for field in sorted(set(flat_old) | set(flat_new)):
        if any(fnmatch.fnmatchcase(field, p) or field.startswith(p + ".") for p in patterns):
            continue
        a, b = flat_old.get(field, _MISSING), flat_new.get(field, _MISSING)
        if a != b:
            diffs.append((field, "<absent>" if a is _MISSING else a, "<absent>" if b is _MISSING else b))
    return diffs


def check_config_compatible(stored: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = ()) -> None:
    """Raise ``ConfigMismatchError`` (a ValueError) listing every differing field unless the configs agree outside
    ``ignore``. Use before resuming: a changed model, loss or data config makes the saved state meaningless."""
    diffs = config_differences(stored, new, ignore)
    if diffs:
        lines = "\n".join(f"  {field}: stored={a!r} new={b!r}" for field, a, b in diffs)
        raise ConfigMismatchError(
            f"refusing to resume: the run dir's stored config differs from the new config in {len(diffs)} "
            f"field(s):\n{lines}\nuse a new run dir, or list fields that may change in ignore=",
            diffs,
        )
