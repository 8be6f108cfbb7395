"""Running a producer of byte chunks on its own thread, so that two cores share the work.

Decompression and hashing release the GIL, so while the applier thread creates files
the producer thread decodes and hashes the next megabytes. The queue between them is
bounded: memory stays constant however large the layer, and a slow target slows the
decoder down instead of piling up chunks.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from types import TracebackType

_QUEUE_CHUNKS = 8
_POLL_SECONDS = 0.1


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
        """Stop the producer (if still running) and wait for its thread to end."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_SECONDS)
        self._thread.join()

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
