"""Comparing nested results (dicts, lists, numbers, strings) with a tolerance on the numbers.

``pytest.approx`` refuses nested dicts (pytest >= 9.2) and its handling of nesting has changed between releases, so
the tests walk the structure themselves: every key and length must match, numbers within ``rel``/``abs``, anything
else exactly. A mismatch names the path to it (``maj_at_k.accuracy[1]``).
"""

from __future__ import annotations

import math
from numbers import Number


def assert_tree_close(actual, expected, *, rel: float = 1e-6, abs_tol: float = 1e-12, path: str = "") -> None:
    where = path or "<root>"
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a dict, got {type(actual).__name__}"
        assert set(actual) == set(expected), f"{where}: keys differ: {sorted(set(actual) ^ set(expected))}"
        for key in expected:
            assert_tree_close(actual[key], expected[key], rel=rel, abs_tol=abs_tol, path=f"{path}.{key}".lstrip("."))
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)), f"{where}: expected a sequence, got {type(actual).__name__}"
        assert len(actual) == len(expected), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_tree_close(a, e, rel=rel, abs_tol=abs_tol, path=f"{path}[{i}]")
    elif isinstance(expected, Number) and not isinstance(expected, bool):
        assert isinstance(actual, Number) and not isinstance(actual, bool), f"{where}: {actual!r} is not a number"
        if math.isnan(expected):
            assert math.isnan(actual), f"{where}: {actual} != nan"
        else:
            assert math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_tol), f"{where}: {actual} != {expected}"
    elif isinstance(expected, bool):
        assert actual is expected, f"{where}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"
