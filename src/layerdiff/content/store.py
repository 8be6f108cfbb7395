"""The content store's interface: what a blob store offers, wherever its bytes live.

Mirrors containerd's ``content/content.go``. Blobs are addressed by digest and are
immutable once committed; new blobs are written through an *ingest* named by a ref, which
survives the writer (a crash, a closed connection) and can be resumed from its offset.
Two implementations: ``LocalStore`` (a folder in containerd's layout) and
``RemoteStore`` (containerd's Content service over gRPC).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Info:
    """A committed blob: digest, size, times and labels."""

    digest: str
    size: int
    created_at: datetime
    updated_at: datetime
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    """An ingest in progress: how far it got and what it expects."""

    ref: str
    offset: int
    total: int
    started_at: datetime
    updated_at: datetime
    expected: str = ""


class BlobReader(Protocol):
    """A committed blob opened for reading: random access and a sequential cursor."""

    @property
    def size(self) -> int:
        """The blob's size in bytes."""

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer only at the end of the blob)."""

    def read(self, size: int = -1, /) -> bytes:
        """The next bytes from the cursor, as a file's ``read``."""

    def close(self) -> None:
        """Release the blob."""


class Writer(Protocol):
    """An open ingest. Only one writer may hold a ref at a time, across processes."""

    @property
    def ref(self) -> str:
        """The ingest's name."""

    @property
    def offset(self) -> int:
        """How many bytes the ingest holds (resumed writers start here)."""

    def digest(self) -> str:
        """The digest of the bytes written so far."""

    def write(self, data: bytes, /) -> int:
        """Append ``data``; returns its length."""

    def truncate(self) -> None:
        """Drop what was written and start the ingest again from offset 0."""

    def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> Info:
        """Make the bytes a blob, atomically, if they have the ``size`` and ``expected``
        digest given (0 and "" accept anything). The writer is closed afterwards, whatever
        the outcome; a refused commit leaves the ingest in place to inspect or abort."""

    def close(self) -> None:
        """Stop writing but keep the ingest, so that it can be resumed."""


class Store(Protocol):
    """Read, write, list, label and delete blobs."""

    def info(self, digest: str) -> Info:
        """The blob's info; ``NotFoundError`` if it is not there."""

    def reader(self, digest: str) -> BlobReader:
        """Open the blob for reading; ``NotFoundError`` if it is not there."""

    def walk(self, filters: Sequence[str] = ()) -> Iterator[Info]:
        """Every blob matching any of ``filters`` (containerd's filter syntax); all if none."""

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Replace the blob's labels, or only the ``labels.KEY`` paths named."""

    def delete(self, digest: str) -> None:
        """Remove the blob; ``NotFoundError`` if it is not there."""

    def writer(self, ref: str, total: int = 0, expected: str = "") -> Writer:
        """Open or resume the ingest ``ref``. ``AlreadyExistsError`` if ``expected`` is
        committed already; ``UnavailableError`` if another writer holds the ref."""

    def status(self, ref: str) -> Status:
        """The ingest's progress; ``NotFoundError`` if there is none."""

    def list_statuses(self, filters: Sequence[str] = ()) -> list[Status]:
        """Every ingest in progress matching any of ``filters`` (field ``ref``)."""

    def abort(self, ref: str) -> None:
        """Remove the ingest and what it held; ``NotFoundError`` if there is none."""
