"""Strict JSON for evaluation results: non-finite numbers (an unreached target's inf) are written as null."""

from __future__ import annotations

import json
import math
import os
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
    """Write ``value`` as indented strict JSON (written whole, then renamed: readers never see half a file)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(json_safe(value), f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    return path
