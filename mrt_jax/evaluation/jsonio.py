"""Strict JSON for evaluation results: non-finite numbers (an unreached target's inf) are written as null."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts (numpy scalars become Python ones)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str, value: Any) -> str:
    """Write ``value`` as indented strict JSON, whole (``mrt_jax.run_files``: renamed into place locally, one
    object on a bucket): readers never see half a file."""
    from mrt_jax import run_files

    run_files.write_text(path, json.dumps(json_safe(value), indent=1, allow_nan=False) + "\n")
    return path
