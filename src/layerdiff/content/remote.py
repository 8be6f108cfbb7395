"""A content store behind containerd's Content service (gRPC), as containerd's proxy store.

Every call carries the namespace (and, if given, the lease) in containerd's metadata
headers: containerd keeps blobs per namespace, and garbage-collects a blob that nothing
references unless a lease holds it. A differ serving containerd should pass on the lease
of the request it serves, so that the blobs it writes survive until containerd labels
them.
"""

from __future__ import annotations

import queue
from collections.abc import Generator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import NoReturn, Self

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from layerdiff.api import content_pb2
from layerdiff.api.content_pb2_grpc import ContentStub
from layerdiff.api.convert import info_from_proto, info_to_proto, status_from_proto
from layerdiff.api.status import error_from_rpc
from layerdiff.content.store import Info, Status
from layerdiff.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    LayerdiffError,
    SourceError,
)

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
#: The most data one Write request carries. containerd accepts up to 16 MiB a message;
#: 1 MiB keeps memory low and matches the chunks containerd's Read sends back.
WRITE_CHUNK = 1 << 20

_Metadata = tuple[tuple[str, str], ...]


class RemoteStore:
    """The ``Store`` protocol over containerd's ``containerd.services.content.v1.Content``."""

    def __init__(self, channel: grpc.Channel, namespace: str, lease: str = "") -> None:
        if not namespace:
            raise InvalidArgumentError("a containerd namespace is required")
        self._stub = ContentStub(channel)
        metadata = [(NAMESPACE_HEADER, namespace)]
        if lease:
            metadata.append((LEASE_HEADER, lease))
        self._metadata: _Metadata = tuple(metadata)

    def info(self, digest: str) -> Info:
        """The blob's info; ``NotFoundError`` if the namespace has no such blob."""
        try:
            response = self._stub.Info(
                content_pb2.InfoRequest(digest=digest), metadata=self._metadata
            )
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        return info_from_proto(response.info)

    def reader(self, digest: str) -> RemoteBlobReader:
        """Open the blob for reading; ``NotFoundError`` if it is not there."""
        return RemoteBlobReader(self._stub, self._metadata, digest, self.info(digest).size)

    def walk(self, filters: Sequence[str] = ()) -> Generator[Info, None, None]:
        """Every blob matching any of ``filters``; all if none. Closing the generator
        early ends the call."""
        call = self._stub.List(
            content_pb2.ListContentRequest(filters=filters), metadata=self._metadata
        )
        try:
            for response in call:
                for info in response.info:
                    yield info_from_proto(info)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        finally:
            # A caller that stops early must not leave the stream open. (grpc-stubs
            # leave RpcContext.cancel unannotated.)
            call.cancel()  # type: ignore[no-untyped-call]

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Replace the blob's labels, or only the ``labels.KEY`` paths named."""
        request = content_pb2.UpdateRequest(
            info=info_to_proto(info), update_mask=FieldMask(paths=fieldpaths)
        )
        try:
            response = self._stub.Update(request, metadata=self._metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        return info_from_proto(response.info)

    def delete(self, digest: str) -> None:
        """Remove the blob from the namespace; ``NotFoundError`` if it is not there."""
        try:
            self._stub.Delete(
                content_pb2.DeleteContentRequest(digest=digest), metadata=self._metadata
            )
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    def writer(self, ref: str, total: int = 0, expected: str = "") -> RemoteWriter:
        """Open or resume the ingest ``ref``. ``AlreadyExistsError`` if ``expected`` is
        committed already; ``UnavailableError`` if another writer holds the ref."""
        if not ref:
            raise InvalidArgumentError("an ingest ref must not be empty")
        return RemoteWriter(self, ref, total, expected)

    def status(self, ref: str) -> Status:
        """The ingest's progress; ``NotFoundError`` if there is none."""
        try:
            response = self._stub.Status(
                content_pb2.StatusRequest(ref=ref), metadata=self._metadata
            )
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        return status_from_proto(response.status)

    def list_statuses(self, filters: Sequence[str] = ()) -> list[Status]:
        """Every ingest in progress matching any of ``filters`` (field ``ref``)."""
        try:
            response = self._stub.ListStatuses(
                content_pb2.ListStatusesRequest(filters=filters), metadata=self._metadata
            )
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        return [status_from_proto(s) for s in response.statuses]

    def abort(self, ref: str) -> None:
        """Remove the ingest and what it held; ``NotFoundError`` if there is none."""
        try:
            self._stub.Abort(content_pb2.AbortRequest(ref=ref), metadata=self._metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    def _open_write(
        self, requests: Iterator[content_pb2.WriteContentRequest]
    ) -> Iterator[content_pb2.WriteContentResponse]:
        return iter(self._stub.Write(requests, metadata=self._metadata))


class RemoteBlobReader:
    """A blob read through ``Read`` calls: ranges on demand, or one stream for the cursor.

    The sequential stream is read only as ``read`` asks for bytes, and gRPC's flow
    control keeps containerd from sending far ahead: memory stays at a few MiB whatever
    the blob's size (a 200 MiB blob read in 64 KiB pieces grows the process by ~13 MiB).
    """

    def __init__(
        self, stub: ContentStub, metadata: _Metadata, digest: str, size: int
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._digest = digest
        self._size = size
        self._pos = 0
        self._stream: grpc.CallIterator[content_pb2.ReadContentResponse] | None = None
        self._chunks: Iterator[content_pb2.ReadContentResponse] | None = None
        self._pending = memoryview(b"")

    @property
    def size(self) -> int:
        """The blob's size in bytes."""
        return self._size

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer only at the end of the blob)."""
        if offset < 0 or size < 0:
            raise InvalidArgumentError(f"invalid read at offset {offset}, size {size}")
        size = min(size, self._size - offset)
        if size <= 0:  # a size of 0 on the wire would mean "to the end"
            return b""
        request = content_pb2.ReadContentRequest(digest=self._digest, offset=offset, size=size)
        call = self._stub.Read(request, metadata=self._metadata)
        try:
            return b"".join(response.data for response in call)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    def read(self, size: int = -1, /) -> bytes:
        """The next bytes from the cursor, as a file's ``read``."""
        left = self._size - self._pos
        want = left if size < 0 else min(size, left)
        parts: list[bytes] = []
        while want > 0:
            if not self._pending:
                self._pending = memoryview(self._next_chunk())
            part = self._pending[:want]
            self._pending = self._pending[len(part) :]
            parts.append(bytes(part))
            want -= len(part)
            self._pos += len(part)
        return b"".join(parts)

    def _next_chunk(self) -> bytes:
        if self._chunks is None:
            request = content_pb2.ReadContentRequest(digest=self._digest, offset=self._pos)
            call = self._stub.Read(request, metadata=self._metadata)
            self._stream, self._chunks = call, iter(call)
        try:
            return next(self._chunks).data
        except StopIteration:
            # Blobs are immutable: a short stream is a failure, not the end of the blob.
            raise SourceError(
                f"blob {self._digest}: the read stream ended at {self._pos} of {self._size} "
                "bytes"
            ) from None
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None

    def close(self) -> None:
        """Stop the sequential stream, if one is open."""
        if self._stream is not None:
            self._stream.cancel()  # type: ignore[no-untyped-call]
        self._stream = self._chunks = None
        self._pending = memoryview(b"")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_END = None  # put on a writer's request queue: half-close the stream


class RemoteWriter:
    """An ingest held open by one ``Write`` stream: each request waits for its answer.

    containerd holds the ref's lock for as long as the stream lives, so ``close``
    half-closes the stream and waits for containerd to end it: then the ingest can be
    resumed at once by another writer.
    """

    def __init__(self, store: RemoteStore, ref: str, total: int, expected: str) -> None:
        self._store = store
        self._ref = ref
        self._requests: queue.SimpleQueue[content_pb2.WriteContentRequest | None] = (
            queue.SimpleQueue()
        )
        self._responses = store._open_write(iter(self._requests.get, _END))
        self._closed = False  # no more requests: close() or a failed call
        self._offset = 0
        self._digest = ""
        # The first request names the ref and locks it; its answer says where to resume.
        self._send(
            content_pb2.WriteContentRequest(
                action=content_pb2.STAT, ref=ref, total=total, expected=expected
            )
        )

    @property
    def ref(self) -> str:
        """The ingest's name."""
        return self._ref

    @property
    def offset(self) -> int:
        """How many bytes the ingest holds (resumed writers start here)."""
        return self._offset

    def digest(self) -> str:
        """The digest of the bytes written so far, as containerd computed it."""
        return self._digest

    def write(self, data: bytes, /) -> int:
        """Append ``data``; returns its length."""
        view = memoryview(data).cast("B")
        for start in range(0, len(view), WRITE_CHUNK):
            chunk = bytes(view[start : start + WRITE_CHUNK])
            before = self._offset
            self._send(
                content_pb2.WriteContentRequest(
                    action=content_pb2.WRITE, offset=before, data=chunk
                )
            )
            if self._offset != before + len(chunk):
                self._fail(f"wrote {self._offset - before} of {len(chunk)} bytes")
        return len(view)

    def truncate(self) -> None:
        """Drop what was written and start the ingest again from offset 0."""
        # A write at offset 0 makes containerd truncate; without data it only answers.
        self._send(content_pb2.WriteContentRequest(action=content_pb2.WRITE, offset=0))

    def commit(
        self, size: int = 0, expected: str = "", labels: Mapping[str, str] | None = None
    ) -> Info:
        """Make the bytes a blob if they have the ``size`` and ``expected`` digest given
        (0 and "" accept anything). The writer is closed afterwards, whatever the
        outcome; a refused commit leaves the ingest in place to inspect or abort."""
        try:
            self._send(
                content_pb2.WriteContentRequest(
                    action=content_pb2.COMMIT,
                    offset=self._offset,
                    total=size,
                    expected=expected,
                    labels=labels or {},
                )
            )
        finally:
            self.close()
        return self._store.info(self._digest)

    def close(self) -> None:
        """Stop writing but keep the ingest, so that it can be resumed."""
        if self._closed:
            return
        self._end_requests()
        try:
            for _ in self._responses:  # containerd answers the half-close, then ends
                pass
        except grpc.RpcError:
            pass  # the stream failed earlier; that error was raised then

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _send(self, request: content_pb2.WriteContentRequest) -> None:
        if self._closed:
            raise FailedPreconditionError(f"the writer of {self._ref!r} is closed")
        self._requests.put(request)
        try:
            response = next(self._responses)
        except StopIteration:
            self._fail("containerd ended the write stream")
        except grpc.RpcError as err:
            self._end_requests()  # the call is over; let grpc's request thread finish
            raise error_from_rpc(err) from None
        self._offset = response.offset
        if response.digest:
            self._digest = response.digest

    def _end_requests(self) -> None:
        if not self._closed:
            self._closed = True
            self._requests.put(_END)

    def _fail(self, message: str) -> NoReturn:
        self.close()
        raise LayerdiffError(f"ingest {self._ref!r}: {message}")
