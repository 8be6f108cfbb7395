"""A blob download as a stream read once, resumed after transient failures, verified.

Every byte handed to the reader is hashed on the way. When the connection fails, the
download goes on from the next byte with a range request (the opener asks for
``Range: bytes=N-`` and refuses a server that ignores it once bytes were handed out). The
digest (and size) of the whole blob is checked when its last byte is read, so a
reader that takes every byte sees ``CorruptLayerError`` before the end of the stream
rather than a quiet success.
"""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Callable
from types import TracebackType
from typing import Self

from layerdiff.errors import CorruptLayerError
from layerdiff.registry.retry import Backoff, TransientError
from layerdiff.registry.transport import Response

#: The most bytes one ``read`` asks of the connection: memory stays bounded.
CHUNK = 1 << 20

#: ``open(offset) -> (response, blob size or None)``: the body from byte ``offset`` on.
Opener = Callable[[int], tuple[Response, int | None]]


class BlobReader:
    """The bytes of one blob; ``read(n)`` until ``b""``. Close it (or use ``with``)."""

    def __init__(
        self, *, what: str, digest: str, size: int | None, opener: Opener, backoff: Backoff
    ) -> None:
        self._what = what
        self._digest = digest
        self._size = size
        self._open = opener
        self._backoff = backoff
        self._hash = hashlib.sha256()
        self._offset = 0
        self._response: Response | None = None
        self._verified = False
        self._mismatch: str | None = None
        self._closed = False

    @property
    def verified_digest(self) -> str:
        """The digest this reader checks the blob against (with its size), so that a
        caller need not hash the same bytes again (``image.verify.layer_blob``)."""
        return self._digest

    @property
    def offset(self) -> int:
        """How many bytes were handed to the reader so far."""
        return self._offset

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes, at most ``CHUNK`` (all the rest if ``size`` is negative);
        ``b""`` at the end."""
        if size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        if self._closed:
            raise ValueError("read of a closed blob reader")
        if self._mismatch is not None:
            # Every read after a failed check fails too: a caller that reads on after
            # the error must not take the end of the stream for a short, clean blob.
            raise CorruptLayerError(self._mismatch)
        if self._verified or size == 0:
            return b""
        want = min(size, CHUNK)
        if self._size is not None:
            want = min(want, self._size - self._offset)
        data = self._backoff.run(self._what, lambda: self._read_once(want)) if want else b""
        self._hash.update(data)
        self._offset += len(data)
        if not data or self._offset == self._size:
            self._verify()
        return data

    def connect(self) -> None:
        """Send the request now (else the first ``read`` does), so that its errors, such
        as an unknown blob, come at once."""
        if self._response is None and not self._closed:
            self._backoff.run(self._what, self._connect)

    def _connect(self) -> Response:
        self._response, size = self._open(self._offset)
        if self._size is None:
            self._size = size
        return self._response

    def _read_once(self, want: int) -> bytes:
        response = self._response
        if response is None:
            response = self._connect()
            if self._size is not None:
                want = min(want, self._size - self._offset)
        try:
            data = response.read(want)
        except (OSError, http.client.HTTPException) as err:
            self._drop()
            raise TransientError(
                f"connection lost after {self._offset} bytes: {type(err).__name__}: {err}"
            ) from None
        if not data and want and self._size is not None:
            self._drop()
            raise TransientError(f"the body ended after {self._offset} bytes of {self._size}")
        return data

    def _verify(self) -> None:
        self._verified = True
        self._drop()
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self._digest:
            self._mismatch = (
                f"{self._what}: the content's digest is {actual}, expected {self._digest}"
            )
            raise CorruptLayerError(self._mismatch)

    def _drop(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def close(self) -> None:
        """Drop the connection; further reads fail."""
        self._drop()
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
