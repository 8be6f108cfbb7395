"""Stopping work that a caller gave up on: cancelled, or past its deadline.

Long operations read and write in chunks; wrapping their input and output in the
``Cancellable*`` adapters makes each chunk a point where a cancelled call stops, by
raising, so that the ordinary error paths clean up (ingests aborted, mounts released,
child processes killed).
"""

from __future__ import annotations

import threading
import time

from layerdiff.comparer import Writable
from layerdiff.compression import Readable
from layerdiff.errors import CanceledError, DeadlineExceededError


class CancelToken:
    """Set once by whoever may cancel; checked by whoever works."""

    def __init__(self, timeout: float | None = None) -> None:
        self._event = threading.Event()
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def cancel(self) -> None:
        """Ask the work to stop."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether the work should stop (cancelled or past the deadline)."""
        return self._event.is_set() or self._expired()

    def check(self) -> None:
        """Raise ``CanceledError`` or ``DeadlineExceededError`` if the work should stop."""
        if self._event.is_set():
            raise CanceledError("the call was cancelled")
        if self._expired():
            raise DeadlineExceededError("the call ran past its deadline")

    def remaining(self) -> float | None:
        """Seconds until the deadline, if there is one."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def _expired(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline


class CancellableReader:
    """A reader that stops with the token."""

    def __init__(self, source: Readable, token: CancelToken) -> None:
        self._source = source
        self._token = token

    def read(self, size: int = -1, /) -> bytes:
        """The source's next bytes, unless the work was cancelled."""
        self._token.check()
        return self._source.read(size)


class CancellableWriter:
    """A writer that stops with the token."""

    def __init__(self, out: Writable, token: CancelToken) -> None:
        self._out = out
        self._token = token

    def write(self, data: bytes, /) -> object:
        """Write to the output, unless the work was cancelled."""
        self._token.check()
        return self._out.write(data)
