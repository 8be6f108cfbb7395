"""What the commands print: descriptors and tables, for people or (``--json``) programs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from layerdiff.oci import Descriptor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}


def print_descriptor(desc: Descriptor, as_json: bool, stream: TextIO | None = None) -> None:
    """One line: ``DIGEST SIZE MEDIATYPE``, or the OCI descriptor as JSON."""
    stream = stream or sys.stdout
    if as_json:
        print(json.dumps(desc.to_json()), file=stream)
    else:
        print(f"{desc.digest} {desc.size} {desc.media_type}", file=stream)


def print_json(value: Any) -> None:
    """``value`` as one line of JSON on standard output."""
    print(json.dumps(value, sort_keys=True))


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None
) -> None:
    """Left-aligned columns separated by two spaces, as ``ctr`` prints its lists; with
    ``width``, lines longer than it are cut at the end with ``…``."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        print(fit("  ".join(cells).rstrip(), width))


def fit(line: str, width: int | None) -> str:
    """``line`` cut to ``width`` characters (``None``: as it is), ending in ``…`` if cut."""
    if width is None or len(line) <= width:
        return line
    return line[: max(width - 1, 0)] + "…"


def terminal_width() -> int | None:
    """The width of the terminal standard output is, or ``None`` if it is not one."""
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns if sys.stdout.isatty() else None
    except (OSError, ValueError):  # not a real file (a test's capture), or closed
        return None


def printable(text: str) -> str:
    """``text`` safe for a terminal: undecodable bytes and control characters escaped."""
    raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return raw.translate(_CONTROL_ESCAPES)
