"""The nested comparison the tests rely on must fail on every kind of difference (a helper that cannot fail is a
defect) and pass on equal structures within the tolerance."""

import math

import pytest

from tests.trees import assert_tree_close

BASE = {"a": [1.0, 2.0, {"b": 3}], "s": "x", "n": None, "flag": True, "nan": math.nan}


def test_equal_and_within_tolerance_pass():
    assert_tree_close(BASE, BASE)
    assert_tree_close({"a": [1.0 + 1e-9, 2.0, {"b": 3.0}], "s": "x", "n": None, "flag": True, "nan": math.nan}, BASE)
    assert_tree_close((1, 2), [1, 2])  # tuples and lists are both sequences (JSON has only lists)


@pytest.mark.parametrize("actual, message", [
    ({**BASE, "extra": 1}, "keys differ"),
    ({k: v for k, v in BASE.items() if k != "s"}, "keys differ"),
    ({**BASE, "a": [1.0, 2.0]}, "a: length 2 != 3"),
    ({**BASE, "a": [1.0, 2.1, {"b": 3}]}, "a[1]: 2.1 != 2.0"),
    ({**BASE, "a": [1.0, 2.0, {"b": 4}]}, "a[2].b: 4 != 3"),
    ({**BASE, "s": "y"}, "s: 'y' != 'x'"),
    ({**BASE, "flag": 1}, "flag: 1 != True"),
    ({**BASE, "nan": 0.0}, "nan: 0.0 != nan"),
    ({**BASE, "a": "123"}, "a: expected a sequence"),
    ([], "<root>: expected a dict"),
])
def test_every_difference_fails_and_names_its_path(actual, message):
    with pytest.raises(AssertionError) as err:
        assert_tree_close(actual, BASE)
    assert message in str(err.value)
