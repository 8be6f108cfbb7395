"""Fuzz target: the mount parsers take any text and give a result or an
``InvalidArgumentError``, and what they parse formats back to itself.

The whole input is one text (``ConsumeUnicode``: its first byte picks ASCII, UTF-16 or
UTF-32, so lone surrogates and non-ASCII reach ``check_option``). It is read three
ways: split on commas as an option list (``parse_options``), as a typed mount spec
(``parse_mount_spec``, then ``format_mount_spec`` and back), and as JSON
(``parse_mounts_json``, then ``mounts_to_json`` and back).
"""

from __future__ import annotations

from layerdiff.errors import InvalidArgumentError
from layerdiff.mount.options import parse_options
from layerdiff.mount.spec import (
    format_mount_spec,
    mounts_to_json,
    parse_mount_spec,
    parse_mounts_json,
)
from tests.fuzz import Finding, _atheris, check_message


def check_mount_text(text: str) -> None:
    """Parse ``text`` every way; raise on anything but a clean outcome."""
    try:
        parse_options(text.split(","))
    except InvalidArgumentError as err:
        check_message(err)
    try:
        mount = parse_mount_spec(text)
    except InvalidArgumentError as err:
        check_message(err)
    else:
        spec = format_mount_spec(mount)
        if parse_mount_spec(spec) != mount:
            raise Finding(f"{text!r} parses to {mount}, formatted as {spec!r}, which does not")
    try:
        mounts = parse_mounts_json(text)
    except InvalidArgumentError as err:
        check_message(err)
    else:
        again = parse_mounts_json(mounts_to_json(mounts))
        if again != mounts:
            raise Finding(f"{text!r} parses to {mounts}; its JSON parses to {again}")


def test_one_input(data: bytes) -> None:
    """libFuzzer's entry point: decode ``data`` and check it."""
    provider = _atheris.provider(data)
    check_mount_text(provider.ConsumeUnicode(provider.remaining_bytes()))
