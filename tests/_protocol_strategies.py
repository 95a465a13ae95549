"""Hypothesis strategies and comparison helpers shared by the protocol tests."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ENDIAN = "?"  # both byte orders


def plain_dtypes(*, datetimes: bool = True) -> st.SearchStrategy[np.dtype]:
    """Every non-structured dtype family the bridge carries, in both byte orders."""
    families = [
        hnp.boolean_dtypes(),
        hnp.integer_dtypes(endianness=ENDIAN),
        hnp.unsigned_integer_dtypes(endianness=ENDIAN),
        hnp.floating_dtypes(endianness=ENDIAN, sizes=(16, 32, 64)),
        hnp.complex_number_dtypes(endianness=ENDIAN, sizes=(64, 128)),
        hnp.unicode_string_dtypes(endianness=ENDIAN, min_len=1, max_len=4),
        hnp.byte_string_dtypes(min_len=1, max_len=4),
    ]
    if datetimes:
        families += [
            hnp.datetime64_dtypes(endianness=ENDIAN),
            hnp.timedelta64_dtypes(endianness=ENDIAN),
        ]
    return st.one_of(*families)


def ndarrays(*, datetimes: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Arrays of 0 to 4 dimensions (zero-length axes included), sometimes non-contiguous."""
    shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
    base = plain_dtypes(datetimes=datetimes).flatmap(lambda dt: hnp.arrays(dt, shapes))

    def reorder(arr: np.ndarray, how: int) -> np.ndarray:
        if how == 1:
            return arr.T
        if how == 2 and arr.ndim:
            return arr[::2]
        return arr

    return st.builds(reorder, base, st.integers(0, 2))


def numpy_scalars() -> st.SearchStrategy[np.generic]:
    return st.one_of(
        st.booleans().map(np.bool_),
        st.integers(-(2**31), 2**31 - 1).map(np.int32),
        st.integers(0, 2**64 - 1).map(np.uint64),
        st.integers(-(2**63), 2**63 - 1).map(np.int64),
        st.floats(width=32, allow_nan=False).map(np.float32),
        st.floats(allow_nan=False).map(np.float64),
    )


def plain_leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=8),
        st.binary(max_size=8),
    )


def nested_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.tuples(inner, inner),
            st.dictionaries(st.text(max_size=6), inner, max_size=3),
        ),
        max_leaves=8,
    )


KEYS = st.text(min_size=1, max_size=12).filter(lambda k: k != "metadata" and not
                                               k.startswith("metadata."))
SOURCES = st.text(min_size=1, max_size=20)


def trains(values: st.SearchStrategy[Any],
           arrays: st.SearchStrategy[np.ndarray]) -> st.SearchStrategy[tuple[dict, dict]]:
    """``(data, metadata)`` with 1 to 3 sources."""
    source_data = st.dictionaries(KEYS, st.one_of(values, arrays), max_size=4)

    def with_meta(data: dict, tid: int) -> tuple[dict, dict]:
        meta = {src: {"source": src, "timestamp.tid": tid} for src in data}
        return data, meta

    return st.builds(with_meta, st.dictionaries(SOURCES, source_data, min_size=1, max_size=3),
                     st.integers(0, 2**63 - 1))


def as_received(value: Any, version: str) -> Any:
    """What a value becomes after a bridge round trip with our codec (tuples become lists;
    numpy scalars become builtins in 2.2 and stay numpy in 1.0, except float64, a float)."""
    if isinstance(value, dict):
        return {k: as_received(v, version) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_received(v, version) for v in value]
    if isinstance(value, np.generic) and (version != "1.0" or isinstance(value, np.float64)):
        return value.item()
    return value


def assert_same(actual: Any, expected: Any, where: str = "") -> None:
    """Equal values of equal types, recursively; arrays bit for bit with equal dtype and shape."""
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), where
        assert actual.dtype == expected.dtype, where
        assert actual.shape == expected.shape, where
        assert actual.tobytes() == expected.tobytes(), where
        return
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{where}[{i}]")
    else:
        assert actual == expected, where
