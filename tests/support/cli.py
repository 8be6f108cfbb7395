"""Running the ``layerdiff`` command in-process (the ``run`` fixture of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

#: ``run("unpack", IMAGE, DEST)`` -> (exit code, stdout, stderr)
Run = Callable[..., tuple[int, str, str]]
