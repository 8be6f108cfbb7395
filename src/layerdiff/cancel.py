"""Stopping work that a caller gave up on: cancelled, or past its deadline.

Long operations read and write in chunks; wrapping their input and output in the
``Cancellable*`` adapters makes each chunk a point where a cancelled call stops, by
raising, so that the ordinary error paths clean up (ingests aborted, mounts released,
child processes killed).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from layerdiff.comparer import Writable
from layerdiff.compression import Readable
from layerdiff.errors import CanceledError, DeadlineExceededError

log = logging.getLogger("layerdiff.cancel")


class CancelToken:
    """Set once by whoever may cancel; checked by whoever works.

    Work that can block outside a read or write (a child process that stops reading)
    registers a callback that unblocks it; callbacks run once, on cancel or at the deadline.
    """

    def __init__(self, timeout: float | None = None) -> None:
        if timeout is not None and timeout >= threading.TIMEOUT_MAX:
            timeout = None  # "no deadline", as some callers spell it
        self._event = threading.Event()
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []
        self._fired = False
        self._timer: threading.Timer | None = None
        if timeout is not None:
            self._timer = threading.Timer(max(timeout, 0), self._fire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        """Ask the work to stop."""
        self._event.set()
        self._fire()

    def add_callback(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Run ``callback`` when the work must stop (now, if it must already); returns a
        function that unregisters it."""
        with self._lock:
            if not self._fired:
                self._callbacks.append(callback)
                return lambda: self._remove(callback)
        callback()
        return lambda: None

    def release(self) -> None:
        """The work is over: stop the deadline's timer and forget the callbacks."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._callbacks.clear()

    def _remove(self, callback: Callable[[], object]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def _fire(self) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one failing callback must not keep the others from running
                log.exception("a cancel callback failed")

    def check(self) -> None:
        """Raise ``CanceledError`` or ``DeadlineExceededError`` if the work should stop."""
        if self._event.is_set():
            raise CanceledError("the call was cancelled")
        if self._expired():
            raise DeadlineExceededError("the call ran past its deadline")

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
