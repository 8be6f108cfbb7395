"""containerd's filter syntax: selectors, quoting, and clear errors for anything else."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerdiff.content.filters import parse_filters
from layerdiff.errors import InvalidArgumentError

LABELS = {"a.b": "x,y", "tag": "v1", "quote\"d": "1"}


def fields(path: Sequence[str]) -> str | None:
    if list(path[:1]) == ["labels"]:
        return LABELS.get(".".join(path[1:]))
    return {"digest": "sha256:00"}.get(".".join(path))


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("labels.tag", True),
        ("labels.missing", False),
        ('labels."a.b"', True),
        ("labels.a.b", True),  # dotted fieldpaths join back to the key
        ('labels."a.b"=="x,y"', True),
        ('labels."quote\\"d"==1', True),
        ("labels.tag==v1,digest==sha256:00", True),
        ("labels.tag==v1,digest==sha256:01", False),
        ("labels.tag != v2", True),
        ("labels.tag~=|^v[0-9]$|", True),
        ('labels.tag=="\\x76\\u0031"', True),
        ('labels.tag=="\\166\\061"', True),
        ("", True),
    ],
)
def test_selector_semantics(text: str, matches: bool) -> None:
    assert parse_filters([text]).matches(fields) is matches


@pytest.mark.parametrize(
    "text",
    ["labels.", "1abc", "labels.tag==", 'labels."open', "labels.tag~=/[/", 'labels.tag=="\\q"',
     "labels.tag==a b", "labels.tag==v1,,x", 'labels.tag=="\\x4"'],
)
def test_malformed_filters_name_the_problem(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid filter"):
        parse_filters([text])


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        parse_filters([text]).matches(fields)
    except InvalidArgumentError as err:
        assert str(err).startswith("invalid filter")
        assert "\n" not in str(err)
