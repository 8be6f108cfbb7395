"""The few parts of atheris the targets use, typed (atheris ships no type information).

atheris is imported on first use, so that the targets' checks (and the regression
tests that call them) run where atheris is not installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, cast


class DataProvider(Protocol):
    """``atheris.FuzzedDataProvider``: typed values cut from the front of the input."""

    def ConsumeUInt(self, count: int, /) -> int:
        """An unsigned integer made of the next ``count`` bytes."""

    def ConsumeBytes(self, count: int, /) -> bytes:
        """The next ``count`` bytes (fewer at the end of the input)."""

    def ConsumeUnicode(self, count: int, /) -> str:
        """Up to ``count`` characters; the first byte picks ASCII, UTF-16 or UTF-32."""

    def remaining_bytes(self) -> int:
        """How many bytes are left."""


def _module() -> Any:
    return importlib.import_module("atheris")


def provider(data: bytes) -> DataProvider:
    """A ``FuzzedDataProvider`` over ``data``."""
    return cast(DataProvider, _module().FuzzedDataProvider(data))


def instrument_imports(include: Sequence[str]) -> AbstractContextManager[None]:
    """Add coverage instrumentation to the packages ``include`` imported in the block."""
    return cast(AbstractContextManager[None], _module().instrument_imports(include=list(include)))


def fuzz(argv: Sequence[str], test_one_input: Callable[[bytes], None]) -> None:
    """Hand ``argv`` (libFuzzer's options and corpus directories) to libFuzzer and run."""
    atheris = _module()
    atheris.Setup(list(argv), test_one_input)
    atheris.Fuzz()
