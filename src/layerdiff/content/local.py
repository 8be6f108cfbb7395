"""A content store in a local folder, in containerd's on-disk layout.

``blobs/<algorithm>/<hex>`` holds committed blobs, read-only; ``ingest/<sha256(ref)>/``
holds each write in progress (``data``, ``ref``, ``startedat``, ``updatedat``, ``total``),
so a containerd content root (``/var/lib/containerd/io.containerd.content.v1.content``)
can be used as it is, and ingests started by either side can be resumed by the other.

A blob becomes visible only by ``rename(2)`` of a verified, fsynced ingest file, so a crash
at any point leaves either no blob or the whole one. Writers hold an ``flock`` on their
ingest directory: a second writer of the same ref, in this process or another, is refused,
and the lock dies with a killed process, so its ingest can be resumed at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from layerdiff.content.filters import parse_filters
from layerdiff.content.labels import LabelDB, validate_labels
from layerdiff.content.store import Info, Status
from layerdiff.durable import sync_dir
from layerdiff.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    TargetError,
    UnavailableError,
)

LABELS_DB = "layerdiff-labels.db"
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")
_READ_CHUNK = 1 << 20


def split_digest(digest: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a well-formed digest; ``InvalidArgumentError`` otherwise."""
    algorithm, sep, encoded = digest.partition(":")
    if (
        not sep
        or _HEX_LENGTHS.get(algorithm) != len(encoded)
        or _HEX.fullmatch(encoded) is None
    ):
        raise InvalidArgumentError(f"invalid digest {digest!r}")
    return algorithm, encoded


class LocalBlobReader:
    """A committed blob opened for reading, by offset or sequentially."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._size = os.fstat(fd).st_size
        self._pos = 0

    @property
    def size(self) -> int:
        """The blob's size in bytes."""
        return self._size

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``."""
        if offset < 0 or size < 0:
            raise InvalidArgumentError(f"invalid read at offset {offset}, size {size}")
        return os.pread(self._fd, size, offset)

    def read(self, size: int = -1, /) -> bytes:
        """The next bytes from the cursor."""
        if size < 0:
            size = max(self._size - self._pos, 0)
        data = os.pread(self._fd, size, self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        """Close the blob's file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> LocalBlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalWriter:
    """An open ingest of a ``LocalStore``; holds the ref's lock until commit or close."""

    def __init__(
        self, store: LocalStore, ref: str, lock_fd: int, total: int, started: datetime
    ) -> None:
        self._store = store
        self._ref = ref
        self._dir = store.ingest_dir(ref)
        self._lock_fd = lock_fd
        self._total = total
        self._started = started
        self._hash = hashlib.sha256()
        self._file = open(self._dir / "data", "ab")  # noqa: SIM115 - closed by commit/close
        self._offset = self._rehash()

    @property
    def ref(self) -> str:
        """The ingest's name."""
        return self._ref

    @property
    def offset(self) -> int:
        """How many bytes the ingest holds."""
        return self._offset

    def digest(self) -> str:
        """The sha256 digest of the bytes written so far."""
        return "sha256:" + self._hash.hexdigest()

    def write(self, data: bytes, /) -> int:
        """Append ``data``; returns its length."""
        self._check_open()
        try:
            self._file.write(data)
        except OSError as err:
            raise TargetError(f"cannot write ingest {self._ref!r}: {err.strerror}") from None
        self._hash.update(data)
        self._offset += len(data)
        return len(data)

    def truncate(self) -> None:
        """Drop what was written; the ingest starts again from offset 0."""
        self._check_open()
        self._file.flush()
        self._file.truncate(0)
        self._hash = hashlib.sha256()
        self._offset = 0

    def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> Info:
        """Verify and publish the ingest as a blob; the writer is closed either way."""
        self._check_open()
        if labels:
            validate_labels(labels)
        try:
            self._finish_file()
            actual = self.digest()
            if size > 0 and size != self._offset:
                raise FailedPreconditionError(
                    f"cannot commit {self._ref!r}: it holds {self._offset} bytes, "
                    f"expected {size}"
                )
            if expected and expected != actual:
                raise FailedPreconditionError(
                    f"cannot commit {self._ref!r}: its digest is {actual}, expected {expected}"
                )
            self._store.publish(self._dir, actual)
        finally:
            self._release()
        if labels:
            self._store.labels.replace(actual, labels)
        return self._store.info(actual)

    def close(self) -> None:
        """Stop writing and keep the ingest for a later writer."""
        if self._lock_fd < 0:
            return
        try:
            self._finish_file()
            _write_timestamp(self._dir / "updatedat", datetime.now(UTC))
        finally:
            self._release()

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rehash(self) -> int:
        # Resuming: the digest must cover what earlier writers left in the data file.
        with open(self._dir / "data", "rb") as data:
            while chunk := data.read(_READ_CHUNK):
                self._hash.update(chunk)
        return self._file.tell()

    def _finish_file(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as err:
            raise TargetError(f"cannot write ingest {self._ref!r}: {err.strerror}") from None
        finally:
            self._file.close()

    def _release(self) -> None:
        self._file.close()
        os.close(self._lock_fd)  # drops the flock
        self._lock_fd = -1

    def _check_open(self) -> None:
        if self._lock_fd < 0:
            raise FailedPreconditionError(f"the writer of {self._ref!r} is closed")


class LocalStore:
    """Blobs and ingests in a folder laid out as containerd's local content store."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)  # as containerd's NewStore
        except OSError as err:
            raise TargetError(f"cannot use {os.fspath(root)!r} as a content store: {err}") from None
        self.labels = LabelDB(self.root / LABELS_DB)

    def close(self) -> None:
        """Release the label database."""
        self.labels.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Blobs

    def blob_path(self, digest: str) -> Path:
        """Where the blob with ``digest`` lives (whether or not it exists)."""
        algorithm, encoded = split_digest(digest)
        return self.root / "blobs" / algorithm / encoded

    def info(self, digest: str) -> Info:
        """The blob's size, times and labels."""
        try:
            st = os.stat(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFoundError(f"content {digest} not found") from None
        return self._info(digest, st)

    def reader(self, digest: str) -> LocalBlobReader:
        """Open the blob for reading."""
        try:
            fd = os.open(self.blob_path(digest), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise NotFoundError(f"content {digest} not found") from None
        return LocalBlobReader(fd)

    def walk(self, filters: Sequence[str] = ()) -> Iterator[Info]:
        """Every blob matching any of ``filters``, by algorithm then digest."""
        matcher = parse_filters(filters)
        blobs = self.root / "blobs"
        for algorithm in sorted(_HEX_LENGTHS):
            with contextlib.suppress(FileNotFoundError):
                for entry in sorted(os.scandir(blobs / algorithm), key=lambda e: e.name):
                    digest = f"{algorithm}:{entry.name}"
                    if len(entry.name) != _HEX_LENGTHS[algorithm] or not entry.is_file():
                        continue
                    try:
                        info = self._info(digest, entry.stat())
                    except FileNotFoundError:
                        continue  # deleted while listing
                    if matcher.matches(_info_fields(info)):
                        yield info

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Set the blob's labels: all of them, or only the ``labels.KEY`` paths named."""
        current = self.info(info.digest)
        labels = dict(current.labels)
        if not fieldpaths:
            labels = dict(info.labels)
        for path in fieldpaths:
            if path == "labels":
                labels = dict(info.labels)
            elif path.startswith("labels."):
                key = path[len("labels.") :]
                if key in info.labels:
                    labels[key] = info.labels[key]
                else:
                    labels.pop(key, None)
            else:
                raise InvalidArgumentError(f"cannot update field {path!r} of content")
        self.labels.replace(info.digest, labels)
        return self.info(info.digest)

    def delete(self, digest: str) -> None:
        """Remove the blob and its labels."""
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFoundError(f"content {digest} not found") from None
        self.labels.forget(digest)

    def publish(self, ingest: Path, digest: str) -> None:
        """Move a verified ingest's data to its blob path, atomically, and drop the ingest."""
        target = self.blob_path(digest)
        if target.exists():
            shutil.rmtree(ingest, ignore_errors=True)
            raise AlreadyExistsError(f"content {digest} already exists")
        data = ingest / "data"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            now = time.time_ns()
            os.utime(data, ns=(now, now))
            os.chmod(data, stat.S_IMODE(os.stat(data).st_mode) & ~0o333)
            os.rename(data, target)
            sync_dir(target.parent)
        except OSError as err:
            raise TargetError(f"cannot commit {digest}: {err.strerror or err}") from None
        shutil.rmtree(ingest, ignore_errors=True)

    # Ingests

    def ingest_dir(self, ref: str) -> Path:
        """The folder of ingest ``ref`` (named by a digest of the ref, as containerd does)."""
        return self.root / "ingest" / hashlib.sha256(ref.encode()).hexdigest()

    def writer(self, ref: str, total: int = 0, expected: str = "") -> LocalWriter:
        """Open or resume the ingest ``ref``."""
        if not ref:
            raise InvalidArgumentError("an ingest ref must not be empty")
        if expected and self.blob_path(expected).exists():
            raise AlreadyExistsError(f"content {expected} already exists")
        lock_fd, fresh = self._lock_ingest(ref)
        try:
            path = self.ingest_dir(ref)
            started = datetime.now(UTC)
            status = None
            if not fresh:
                # An ingest whose bookkeeping a crash cut short is started afresh.
                with contextlib.suppress(NotFoundError):
                    status = self._status(path)
            if status is not None:
                if status.ref != ref:
                    raise FailedPreconditionError(
                        f"ingest folder {path} belongs to {status.ref!r}, not {ref!r}"
                    )
                if total and status.total and total != status.total:
                    raise FailedPreconditionError(
                        f"ingest {ref!r} was started for {status.total} bytes, not {total}"
                    )
                started, total = status.started_at, total or status.total
            else:
                (path / "ref").write_text(ref)
                _write_timestamp(path / "startedat", started)
                _write_timestamp(path / "updatedat", started)
                if total > 0:
                    (path / "total").write_text(str(total))
                (path / "data").write_bytes(b"")
            return LocalWriter(self, ref, lock_fd, total, started)
        except OSError as err:
            os.close(lock_fd)
            raise TargetError(f"cannot open ingest {ref!r}: {err.strerror or err}") from None
        except BaseException:
            os.close(lock_fd)
            raise

    def status(self, ref: str) -> Status:
        """How far the ingest ``ref`` got."""
        return self._status(self.ingest_dir(ref))

    def list_statuses(self, filters: Sequence[str] = ()) -> list[Status]:
        """Every ingest in progress matching any of ``filters`` (field ``ref``)."""
        matcher = parse_filters(filters)
        out: list[Status] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(os.scandir(self.root / "ingest"), key=lambda e: e.name):
                try:
                    status = self._status(Path(entry.path))
                except NotFoundError:
                    continue  # committed or aborted while listing
                if matcher.matches(_status_fields(status)):
                    out.append(status)
        return out

    def abort(self, ref: str) -> None:
        """Remove the ingest; refused while a writer holds it."""
        path = self.ingest_dir(ref)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"ingest ref {ref!r} not found") from None
        try:
            _flock_soon(fd, ref)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)

    def _lock_ingest(self, ref: str) -> tuple[int, bool]:
        """Lock the ingest folder, creating it if needed; ``(fd, created)``."""
        path = self.ingest_dir(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fresh = False
            try:
                path.mkdir()
                fresh = True
            except FileExistsError:
                pass
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # aborted or committed between mkdir and open: start over
            try:
                _flock(fd, ref)
                # The folder may have been removed (commit, abort) before the lock was taken.
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd, fresh or not (path / "ref").exists()
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _status(self, path: Path) -> Status:
        try:
            data = os.stat(path / "data")
            ref = (path / "ref").read_text()
            started = _read_timestamp(path / "startedat")
            updated = _read_timestamp(path / "updatedat")
        except FileNotFoundError:
            raise NotFoundError(f"ingest {path.name} not found") from None
        try:
            total = int((path / "total").read_text())
        except (FileNotFoundError, ValueError):
            total = 0
        # updatedat is written on close only; the data file's mtime may be newer.
        mtime = datetime.fromtimestamp(data.st_mtime, UTC)
        return Status(ref, data.st_size, total, started, max(updated, mtime))

    def _info(self, digest: str, st: os.stat_result) -> Info:
        labels, labelled_ns = self.labels.get(digest)
        created = datetime.fromtimestamp(st.st_mtime, UTC)
        updated = created
        if labelled_ns is not None:
            updated = max(created, datetime.fromtimestamp(labelled_ns / 1e9, UTC))
        return Info(digest, st.st_size, created, updated, labels)


def _info_fields(info: Info) -> Callable[[Sequence[str]], str | None]:
    def field(path: Sequence[str]) -> str | None:
        if not path:
            return None
        if path[0] == "digest":
            return info.digest
        if path[0] == "size":
            return str(info.size)
        if path[0] == "labels":
            return info.labels.get(".".join(path[1:]))
        return None

    return field


def _status_fields(status: Status) -> Callable[[Sequence[str]], str | None]:
    return lambda path: status.ref if list(path) == ["ref"] else None


def _flock(fd: int, ref: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise UnavailableError(f"ingest {ref!r} is held by another writer") from None
        raise


#: How long ``abort`` waits for a lock that a just-forked child may still hold.
_FORK_HOLD_SECONDS = 1.0


def _flock_soon(fd: int, ref: str) -> None:
    """``_flock``, tried again for a moment while it is held.

    A child forked by another thread (a stream processor starting) shares the lock of a
    writer that has just closed until the child execs or closes its copy of the fd
    (O_CLOEXEC closes it only at exec): an abort right after the close would otherwise
    be refused, and the ingest left behind.
    """
    deadline = time.monotonic() + _FORK_HOLD_SECONDS
    while True:
        try:
            _flock(fd, ref)
            return
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _write_timestamp(path: Path, when: datetime) -> None:
    # Go's time.MarshalText (RFC 3339 with nanoseconds), which containerd reads back.
    path.write_text(when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def _read_timestamp(path: Path) -> datetime:
    text = path.read_text().strip()
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text))
    except ValueError:
        return datetime.fromtimestamp(os.stat(path).st_mtime, UTC)
