"""Running a producer of byte chunks on its own thread, so that two cores share the work.

Decompression and hashing release the GIL, so while the applier thread creates files
the producer thread decodes the next megabytes, and a third thread hashes them
(``ThreadedHash``): on a fast decoder (zstd) decoding and hashing on one thread made it
the slowest of the three. The queues between them are bounded: memory stays constant
however large the layer, and a slow target slows the decoder down instead of piling up
chunks.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from types import TracebackType

_QUEUE_CHUNKS = 8
#: How much of a stream ``ThreadedHash`` hashes before it starts its thread.
_INLINE_HASH_BYTES = 16 << 20
_POLL_SECONDS = 0.1
_CLOSE_WAIT_SECONDS = 5.0

log = logging.getLogger("layerdiff.pipeline")


class _End:
    """Marks the end of the stream (with the producer's exception, if it failed)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Prefetcher:
    """Iterates ``source`` on a background thread; use as a context manager."""

    def __init__(self, source: Iterator[bytes], *, name: str = "layerdiff-decode") -> None:
        self._source = source
        self._queue: queue.Queue[bytes | _End] = queue.Queue(_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._done = False

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the producer (if still running) and wait a bounded time for it to end.

        A producer blocked reading a source that never answers (a pipe whose writer
        stalls) cannot be interrupted from here; it is a daemon thread, so it is left to
        end with that read rather than hang the caller.
        """
        self._stop.set()
        deadline = time.monotonic() + _CLOSE_WAIT_SECONDS
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_SECONDS)
        if self._thread.is_alive():
            log.warning("decoder thread still blocked reading the layer; leaving it behind")

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            for chunk in self._source:
                if not self._put(chunk):
                    return
        except BaseException as err:  # handed to the consumer, re-raised there
            error = err
        self._put(_End(error))

    def _put(self, item: bytes | _End) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[bytes]:
        while not self._done:
            item = self._queue.get()
            if isinstance(item, _End):
                self._done = True
                if item.error is not None:
                    raise item.error
                return
            yield item


class ThreadedHash:
    """A sha256 of the chunks given to ``update``: computed in the caller's thread for
    the first ``inline_bytes``, then on a thread of its own.

    A thread pays off only on big layers: on a small one, handing chunks (and the GIL)
    to a third thread costs more than hashing them. Chunks are shared, not copied; at
    most ``_QUEUE_CHUNKS`` wait. ``hexdigest`` waits for the last one; ``close``
    (always call it, e.g. on an error) ends the thread.
    """

    def __init__(self, inline_bytes: int = _INLINE_HASH_BYTES) -> None:
        self._hash = hashlib.sha256()
        self._inline = inline_bytes
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUE_CHUNKS)
        self._thread: threading.Thread | None = None
        self._closed = False

    def update(self, chunk: bytes) -> None:
        """Hash ``chunk`` after the ones before it (ignored once closed: a producer
        left behind must not block on a queue nobody reads)."""
        if self._closed:
            return
        if self._thread is None:
            if self._inline > 0:
                self._inline -= len(chunk)
                self._hash.update(chunk)
                return
            self._thread = threading.Thread(target=self._run, name="layerdiff-hash",
                                            daemon=True)
            self._thread.start()
        self._queue.put(chunk)

    def hexdigest(self) -> str:
        """The digest of every chunk given so far; no ``update`` may follow."""
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        """End the thread once it has hashed what it was given (it never blocks long:
        it only waits for chunks)."""
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)
