"""Encoding: bodies within the row and byte limits, both shapes, order kept."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbistream.encoding import BodyBuilder, encode_row, split_bodies

rows_strategy = st.lists(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.one_of(st.none(), st.booleans(), st.integers(-(2**62), 2**62), st.text(max_size=50)),
        max_size=4,
    ),
    max_size=60,
)


@given(rows_strategy, st.integers(1, 7), st.integers(60, 400), st.sampled_from(["array", "rows"]))
def test_split_round_trips_within_limits(rows, max_rows, max_bytes, shape) -> None:  # type: ignore[no-untyped-def]
    parts = [encode_row(r) for r in rows]
    try:
        bodies = split_bodies(parts, shape, max_rows=max_rows, max_bytes=max_bytes)
    except ValueError:
        assert any(len(p) + 10 > max_bytes for p in parts)
        return
    decoded: list[object] = []
    for body, count in bodies:
        assert len(body) <= max_bytes
        assert 1 <= count <= max_rows
        data = json.loads(body)
        batch = data if shape == "array" else data["rows"]
        assert len(batch) == count
        decoded.extend(batch)
    assert decoded == rows


def test_builder_refuses_past_the_limits() -> None:
    builder = BodyBuilder("rows", max_rows=2, max_bytes=1000)
    assert builder.add(b'{"a":1}') and builder.add(b'{"a":2}')
    assert not builder.add(b'{"a":3}')
    assert json.loads(builder.body()) == {"rows": [{"a": 1}, {"a": 2}]}
    tiny = BodyBuilder("array", max_bytes=10)
    assert tiny.add(b'{"a":1}')
    assert not tiny.add(b'{"b":1}')
    assert tiny.size == len(tiny.body())


def test_default_limits_are_the_documented_ones() -> None:
    assert BodyBuilder("array").max_bytes == 15 * 1024
    assert BodyBuilder("rows").max_bytes == 16 * 1024 * 1024
    assert BodyBuilder("rows").max_rows == 10_000


def test_a_row_too_big_for_any_body_is_an_error() -> None:
    with pytest.raises(ValueError, match="row 1 encodes to"):
        split_bodies([b"{}", b"x" * 100], "array", max_bytes=50)
