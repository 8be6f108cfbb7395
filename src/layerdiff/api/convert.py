"""Between layerdiff's Python types and containerd's API messages.

Every conversion is total and loses nothing the other side can hold, except timestamps
(``datetime`` keeps microseconds; protobuf and containerd keep nanoseconds).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from layerdiff.api import content_pb2, descriptor_pb2, diff_pb2, mount_pb2
from layerdiff.content.store import Info, Status
from layerdiff.mount import Mount
from layerdiff.oci import Descriptor


def timestamp_to_proto(when: datetime) -> Timestamp:
    """A ``Timestamp`` for an aware ``datetime`` (a naive one is taken as UTC)."""
    ts = Timestamp()
    ts.FromDatetime(when if when.tzinfo is not None else when.replace(tzinfo=UTC))
    return ts


def timestamp_from_proto(ts: Timestamp) -> datetime:
    """An aware UTC ``datetime``; an unset ``Timestamp`` is the Unix epoch, as in Go."""
    return ts.ToDatetime(tzinfo=UTC)


def descriptor_to_proto(desc: Descriptor) -> descriptor_pb2.Descriptor:
    """containerd's ``Descriptor`` message for an OCI descriptor."""
    return descriptor_pb2.Descriptor(
        media_type=desc.media_type,
        digest=desc.digest,
        size=desc.size,
        annotations=desc.annotations,
    )


def descriptor_from_proto(msg: descriptor_pb2.Descriptor) -> Descriptor:
    """The OCI descriptor a ``Descriptor`` message carries."""
    return Descriptor(
        media_type=msg.media_type,
        digest=msg.digest,
        size=msg.size,
        annotations=dict(msg.annotations),
    )


def mount_to_proto(mount: Mount) -> mount_pb2.Mount:
    """containerd's ``Mount`` message for a mount."""
    return mount_pb2.Mount(
        type=mount.type, source=mount.source, target=mount.target, options=mount.options
    )


def mount_from_proto(msg: mount_pb2.Mount) -> Mount:
    """The ``Mount`` a message describes; ``InvalidArgumentError`` if no kernel could
    take it (a NUL byte, a malformed option)."""
    return Mount(
        type=msg.type, source=msg.source, target=msg.target, options=tuple(msg.options)
    )


def source_date_epoch(request: diff_pb2.DiffRequest) -> int | None:
    """The request's SOURCE_DATE_EPOCH in whole seconds, or ``None`` when it is unset."""
    if not request.HasField("source_date_epoch"):
        return None
    return request.source_date_epoch.seconds


def info_to_proto(info: Info) -> content_pb2.Info:
    """containerd's content ``Info`` message for a blob's info."""
    return content_pb2.Info(
        digest=info.digest,
        size=info.size,
        created_at=timestamp_to_proto(info.created_at),
        updated_at=timestamp_to_proto(info.updated_at),
        labels=dict(info.labels),
    )


def info_from_proto(msg: content_pb2.Info) -> Info:
    """A blob's info from containerd's ``Info`` message.

    containerd's ``List`` leaves ``updated_at`` unset; the creation time stands in for
    it then, rather than 1970.
    """
    created = timestamp_from_proto(msg.created_at)
    updated = timestamp_from_proto(msg.updated_at) if msg.HasField("updated_at") else created
    return Info(
        digest=msg.digest,
        size=msg.size,
        created_at=created,
        updated_at=updated,
        labels=dict(msg.labels),
    )


def status_from_proto(msg: content_pb2.Status) -> Status:
    """An ingest's progress from containerd's ``Status`` message."""
    return Status(
        ref=msg.ref,
        offset=msg.offset,
        total=msg.total,
        started_at=timestamp_from_proto(msg.started_at),
        updated_at=timestamp_from_proto(msg.updated_at),
        expected=msg.expected,
    )
