"""Conversions between layerdiff's types and containerd's messages, and the error table
(exercised through a real gRPC server and client)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from layerdiff import errors
from layerdiff.api import content_pb2, diff_pb2, diff_pb2_grpc, mount_pb2
from layerdiff.api.convert import (
    descriptor_from_proto,
    descriptor_to_proto,
    info_from_proto,
    info_to_proto,
    mount_from_proto,
    mount_to_proto,
    source_date_epoch,
    status_from_proto,
    timestamp_from_proto,
    timestamp_to_proto,
)
from layerdiff.api.status import abort, code_for, error_from_rpc
from layerdiff.content.store import Info
from layerdiff.mount import Mount
from layerdiff.oci import LABEL_UNCOMPRESSED, MEDIA_TYPE_LAYER_GZIP, Descriptor

DIGEST = "sha256:" + "ab" * 32


def test_descriptor_round_trips_with_annotations() -> None:
    desc = Descriptor(MEDIA_TYPE_LAYER_GZIP, DIGEST, 1234, {LABEL_UNCOMPRESSED: DIGEST})
    msg = descriptor_to_proto(desc)
    assert (msg.media_type, msg.digest, msg.size) == (MEDIA_TYPE_LAYER_GZIP, DIGEST, 1234)
    assert dict(msg.annotations) == {LABEL_UNCOMPRESSED: DIGEST}
    assert descriptor_from_proto(msg) == desc
    assert descriptor_from_proto(descriptor_to_proto(Descriptor("x", DIGEST, 0))).annotations == {}


def test_mount_round_trips() -> None:
    mount = Mount("overlay", "overlay", "", ("lowerdir=/a:/b", "upperdir=/u", "workdir=/w"))
    msg = mount_to_proto(mount)
    assert list(msg.options) == ["lowerdir=/a:/b", "upperdir=/u", "workdir=/w"]
    assert mount_from_proto(msg) == mount


def test_mount_no_kernel_could_take_is_invalid() -> None:
    with pytest.raises(errors.InvalidArgumentError):
        mount_from_proto(mount_pb2.Mount(type="bind", source="/a\0b", options=["rbind"]))


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 58, 500000, tzinfo=UTC),
        datetime(2024, 5, 6, 9, 8, 9, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_timestamps_round_trip(when: datetime) -> None:
    assert timestamp_from_proto(timestamp_to_proto(when)) == when


def test_naive_datetime_is_utc_and_unset_timestamp_is_the_epoch() -> None:
    assert timestamp_to_proto(datetime(1970, 1, 1, 0, 0, 10)).seconds == 10
    assert timestamp_from_proto(Timestamp()) == datetime(1970, 1, 1, tzinfo=UTC)


def test_source_date_epoch_is_whole_seconds_or_none() -> None:
    assert source_date_epoch(diff_pb2.DiffRequest()) is None
    request = diff_pb2.DiffRequest(source_date_epoch=Timestamp(seconds=1700000000, nanos=5))
    assert source_date_epoch(request) == 1700000000
    assert source_date_epoch(diff_pb2.DiffRequest(source_date_epoch=Timestamp())) == 0


def test_info_round_trips_and_lists_updated_at_fallback() -> None:
    created = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    info = Info(DIGEST, 42, created, created + timedelta(seconds=1), {"a": "b"})
    assert info_from_proto(info_to_proto(info)) == info
    # containerd's List sends no updated_at.
    listed = content_pb2.Info(digest=DIGEST, size=42, created_at=timestamp_to_proto(created))
    assert info_from_proto(listed).updated_at == created


def test_status_from_proto() -> None:
    started = datetime(2024, 1, 2, tzinfo=UTC)
    msg = content_pb2.Status(
        ref="r", offset=5, total=10, expected=DIGEST,
        started_at=timestamp_to_proto(started), updated_at=timestamp_to_proto(started),
    )
    status = status_from_proto(msg)
    assert (status.ref, status.offset, status.total, status.expected) == ("r", 5, 10, DIGEST)
    assert status.started_at == status.updated_at == started


# The error table, through a real server: what a handler raises, what the client gets.
_RAISED: dict[str, BaseException] = {
    "invalid": errors.InvalidArgumentError("bad option"),
    "corrupt": errors.CorruptLayerError("gzip stream truncated"),
    "rules": errors.InvalidLayerError("whiteout without a file"),
    "missing": errors.NotFoundError("blob sha256:... not found"),
    "exists": errors.AlreadyExistsError("content exists"),
    "precondition": errors.FailedPreconditionError("unexpected commit digest"),
    "unsupported": errors.UnsupportedCompressionError("unknown compression bzip2"),
    "not-handled": errors.NotHandledError("no stream processor for media type x"),
    "busy": errors.UnavailableError("ref locked"),
    "limit": errors.LimitExceededError("the layer has more than 10 entries"),
    "cancelled": errors.CanceledError("stopped by the caller"),
    "deadline": errors.DeadlineExceededError("took too long"),
    "target": errors.TargetError("no space left on device"),
    "bug": ZeroDivisionError("division by zero"),
}


class _Failing(diff_pb2_grpc.DiffServicer):
    def Apply(
        self, request: diff_pb2.ApplyRequest, context: grpc.ServicerContext
    ) -> diff_pb2.ApplyResponse:
        abort(context, _RAISED[request.diff.media_type])

    def Diff(
        self, request: diff_pb2.DiffRequest, context: grpc.ServicerContext
    ) -> diff_pb2.DiffResponse:
        abort(context, _RAISED[request.media_type])


@pytest.fixture(scope="module")
def diff_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[diff_pb2_grpc.DiffStub]:
    socket: Path = tmp_path_factory.mktemp("grpc") / "diff.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    diff_pb2_grpc.add_DiffServicer_to_server(_Failing(), server)
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    try:
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            yield diff_pb2_grpc.DiffStub(channel)
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("case", "code", "received"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        ("corrupt", grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        ("rules", grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        ("missing", grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
        ("exists", grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExistsError),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPreconditionError),
        # containerd's diff service tries its next differ on UNIMPLEMENTED: only for a
        # request refused before anything was touched.
        ("not-handled", grpc.StatusCode.UNIMPLEMENTED, errors.NotHandledError),
        ("unsupported", grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        ("busy", grpc.StatusCode.UNAVAILABLE, errors.UnavailableError),
        ("limit", grpc.StatusCode.RESOURCE_EXHAUSTED, errors.LimitExceededError),
        ("cancelled", grpc.StatusCode.CANCELLED, errors.CanceledError),
        ("deadline", grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceededError),
        ("target", grpc.StatusCode.UNKNOWN, errors.LayerdiffError),
        ("bug", grpc.StatusCode.INTERNAL, errors.LayerdiffError),
    ],
)
def test_errors_cross_the_wire_as_containerds_codes(
    diff_client: diff_pb2_grpc.DiffStub,
    case: str,
    code: grpc.StatusCode,
    received: type[errors.LayerdiffError],
) -> None:
    raised = _RAISED[case]
    assert code_for(raised) == code
    apply = diff_pb2.ApplyRequest(diff=descriptor_to_proto(Descriptor(case, DIGEST, 1)))
    diff = diff_pb2.DiffRequest(media_type=case)
    for call in (lambda: diff_client.Apply(apply, timeout=30),
                 lambda: diff_client.Diff(diff, timeout=30)):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert isinstance(caught.value, grpc.Call)
        assert caught.value.code() == code
        error = error_from_rpc(caught.value)
        assert type(error) is received
        assert str(raised) in str(error)
        if received is errors.LayerdiffError:
            assert code.name in str(error)
