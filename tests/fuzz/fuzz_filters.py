"""Fuzz target: ``parse_filters`` takes any text and gives a ``Filter`` or an
``InvalidArgumentError``; a parsed filter can be matched without raising.

The input is one text (``ConsumeUnicode``), split on newlines into several filters.
A parsed filter is matched against an object whose every fieldpath has a short value,
so that ``~=`` patterns run (a short subject bounds a pathological regexp's time).
"""

from __future__ import annotations

from collections.abc import Sequence

from layerdiff.content.filters import parse_filters
from layerdiff.errors import InvalidArgumentError
from tests.fuzz import _atheris, check_message


def _value(fieldpath: Sequence[str]) -> str | None:
    # Present for some paths and absent for others, so every operator's branches run.
    return None if len(fieldpath) > 2 else "sha256:0123 v1.2"


def check_filter_text(text: str) -> None:
    """Parse ``text`` as newline-separated filters and match; raise on an unclean outcome."""
    try:
        parsed = parse_filters(text.split("\n"))
    except InvalidArgumentError as err:
        check_message(err)
        return
    parsed.matches(_value)


def test_one_input(data: bytes) -> None:
    """libFuzzer's entry point: decode ``data`` and check it."""
    provider = _atheris.provider(data)
    check_filter_text(provider.ConsumeUnicode(provider.remaining_bytes()))
