"""What the commands print: descriptors and tables, for people or (``--json``) programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from layerdiff.oci import Descriptor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


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


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns separated by two spaces, as ``ctr`` prints its lists."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())
