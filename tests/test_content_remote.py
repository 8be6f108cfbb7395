"""RemoteStore against a real containerd 1.7: its Content service, namespaces, leases, ctr."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from layerdiff.content.remote import RemoteStore
from layerdiff.content.store import Info
from layerdiff.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from tests.support.containerd import Containerd

pytestmark = [pytest.mark.containerd, pytest.mark.root]

_namespaces = itertools.count(1)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put(store: RemoteStore, data: bytes, ref: str = "ref", **labels: str) -> Info:
    with store.writer(ref) as writer:
        writer.write(data)
        return writer.commit(len(data), digest_of(data), labels)


@pytest.fixture(scope="module")
def channel(containerd: Containerd) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"unix://{containerd.socket}") as channel:
        yield channel


def new_store(containerd: Containerd, channel: grpc.Channel) -> tuple[RemoteStore, str]:
    """A store in a fresh namespace, under a lease so that containerd's garbage
    collector keeps the unreferenced test blobs."""
    namespace = f"remote-{next(_namespaces)}"
    containerd.ctr("leases", "create", "--id", "test", namespace=namespace)
    return RemoteStore(channel, namespace, lease="test"), namespace


@pytest.fixture
def store(containerd: Containerd, channel: grpc.Channel) -> RemoteStore:
    return new_store(containerd, channel)[0]


def test_written_blob_reads_back_by_offset_and_sequentially(store: RemoteStore) -> None:
    data = os.urandom(3 * (1 << 20) + 12345)  # several messages each way
    info = put(store, data)
    assert (info.digest, info.size) == (digest_of(data), len(data))
    with store.reader(digest_of(data)) as reader:
        assert reader.size == len(data)
        assert reader.read_at(0, 10) == data[:10]
        assert reader.read_at((1 << 20) - 5, 2 << 20) == data[(1 << 20) - 5 : (3 << 20) - 5]
        assert reader.read_at(len(data) - 3, 10) == data[-3:]
        assert reader.read_at(len(data), 10) == b""
        assert reader.read_at(len(data) + 100, 10) == b""
        assert reader.read_at(5, 0) == b""
        assert reader.read(100) == data[:100]
        pieces = []
        while piece := reader.read(70001):
            pieces.append(piece)
        assert b"".join(pieces) == data[100:]
        assert reader.read() == b""
        with pytest.raises(InvalidArgumentError):
            reader.read_at(-1, 10)


def test_sequential_reads_and_random_access_do_not_disturb_each_other(
    store: RemoteStore,
) -> None:
    data = os.urandom(2 * (1 << 20))
    put(store, data)
    with store.reader(digest_of(data)) as reader:
        assert reader.read(1000) == data[:1000]
        assert reader.read_at(1 << 20, 1000) == data[1 << 20 : (1 << 20) + 1000]
        assert reader.read() == data[1000:]


def test_commit_labels_update_and_info(store: RemoteStore) -> None:
    data = b"labelled"
    info = put(store, data, a="1", b="2")
    assert dict(info.labels) == {"a": "1", "b": "2"}
    assert store.info(info.digest) == info
    changed = Info(info.digest, info.size, info.created_at, info.updated_at, {"b": "3", "c": "4"})
    updated = store.update(changed, ["labels.b"])
    assert dict(updated.labels) == {"a": "1", "b": "3"}
    assert updated.updated_at >= info.updated_at
    assert dict(store.update(changed).labels) == {"b": "3", "c": "4"}
    assert dict(store.info(info.digest).labels) == {"b": "3", "c": "4"}


def test_walk_filters_as_containerd(store: RemoteStore) -> None:
    one = put(store, b"one", "r1", tag="v1.0", kind="layer")
    two = put(store, b"two", "r2", tag="v2.0")
    three = put(store, b"three", "r3")

    def walked(*filters: str) -> set[str]:
        return {i.digest for i in store.walk(filters)}

    assert walked() == {one.digest, two.digest, three.digest}
    assert walked("labels.tag") == {one.digest, two.digest}
    assert walked("labels.tag~=/^v1[.]/") == {one.digest}
    assert walked("labels.tag==v2.0", "labels.kind==layer") == {one.digest, two.digest}
    assert walked(f"digest=={three.digest}") == {three.digest}
    assert walked("labels.tag==v1.0,labels.kind!=layer") == set()
    with pytest.raises(InvalidArgumentError):
        walked("labels.tag==")


def test_walk_stopped_early_ends_the_stream(store: RemoteStore) -> None:
    for n in range(3):
        put(store, b"blob %d" % n, f"r{n}")
    walk = store.walk()
    next(walk)
    walk.close()  # cancels the List call; the store stays usable
    assert len(list(store.walk())) == 3


def test_closed_ingest_resumes_where_it_stopped(store: RemoteStore) -> None:
    data = os.urandom(1 << 20) + b"tail"
    writer = store.writer("resume", total=len(data))
    writer.write(data[:1000])
    writer.close()
    status = store.status("resume")
    assert (status.ref, status.offset, status.total) == ("resume", 1000, len(data))
    assert [s.ref for s in store.list_statuses(["ref==resume"])] == ["resume"]
    assert store.list_statuses(["ref==other"]) == []
    with store.writer("resume") as writer:
        assert writer.offset == 1000
        assert writer.digest() == digest_of(data[:1000])
        writer.write(data[1000:])
        assert writer.digest() == digest_of(data)
        info = writer.commit(len(data), digest_of(data))
    assert info.digest == digest_of(data)
    with store.reader(info.digest) as reader:
        assert reader.read() == data
    with pytest.raises(NotFoundError):
        store.status("resume")


def test_second_writer_of_a_ref_is_unavailable_until_the_first_closes(
    store: RemoteStore,
) -> None:
    first = store.writer("busy")
    first.write(b"held")
    with pytest.raises(UnavailableError, match="locked"):
        store.writer("busy")
    first.close()
    with store.writer("busy") as second:
        assert second.offset == 4


def test_truncate_restarts_the_ingest(store: RemoteStore) -> None:
    with store.writer("trunc") as writer:
        writer.write(b"first attempt")
        writer.truncate()
        assert (writer.offset, writer.digest()) == (0, digest_of(b""))
        writer.write(b"second")
        assert writer.commit(6, digest_of(b"second")).size == 6


def test_commit_with_wrong_digest_names_both_and_keeps_the_ingest(store: RemoteStore) -> None:
    wrong = "sha256:" + "0" * 64
    writer = store.writer("bad")
    writer.write(b"content")
    with pytest.raises(FailedPreconditionError) as caught:
        writer.commit(expected=wrong)
    assert digest_of(b"content") in str(caught.value)
    assert wrong in str(caught.value)
    with pytest.raises(FailedPreconditionError, match="closed"):
        writer.write(b"more")
    assert store.status("bad").offset == 7
    store.abort("bad")


def test_commit_with_wrong_size_is_refused(store: RemoteStore) -> None:
    with store.writer("size") as writer:
        writer.write(b"12345")
        with pytest.raises(FailedPreconditionError, match="size"):
            writer.commit(size=6)


def test_existing_blob_is_not_written_twice(store: RemoteStore) -> None:
    info = put(store, b"once")
    with pytest.raises(AlreadyExistsError):
        store.writer("again", expected=info.digest)
    writer = store.writer("again2")
    writer.write(b"once")
    with pytest.raises(AlreadyExistsError):
        writer.commit(expected=info.digest)


def test_abort_removes_the_ingest(store: RemoteStore) -> None:
    with store.writer("gone") as writer:
        writer.write(b"partial")
    store.abort("gone")
    with pytest.raises(NotFoundError):
        store.status("gone")
    with pytest.raises(NotFoundError):
        store.abort("gone")
    with store.writer("gone") as writer:
        assert writer.offset == 0


def test_missing_blobs_are_not_found(store: RemoteStore) -> None:
    missing = "sha256:" + "1" * 64
    with pytest.raises(NotFoundError, match=missing):
        store.info(missing)
    with pytest.raises(NotFoundError):
        store.reader(missing)
    with pytest.raises(NotFoundError):
        store.delete(missing)
    with pytest.raises(InvalidArgumentError):
        store.info("sha256:nothex")


def test_delete_removes_the_blob(store: RemoteStore) -> None:
    info = put(store, b"doomed")
    store.delete(info.digest)
    with pytest.raises(NotFoundError):
        store.info(info.digest)


def test_namespaces_are_separate(containerd: Containerd, channel: grpc.Channel) -> None:
    first, _ = new_store(containerd, channel)
    second, _ = new_store(containerd, channel)
    info = put(first, b"only in the first namespace")
    with pytest.raises(NotFoundError):
        second.info(info.digest)
    assert list(second.walk()) == []


def test_ctr_reads_what_remote_store_wrote(
    containerd: Containerd, channel: grpc.Channel
) -> None:
    store, namespace = new_store(containerd, channel)
    # Text: ctr() decodes its output as text.
    data = os.urandom(1 << 20).hex().encode()
    info = put(store, data, **{"layerdiff.test/origin": "remote"})
    got = containerd.ctr("content", "get", info.digest, namespace=namespace).stdout
    assert got.encode() == data
    listing = containerd.ctr("content", "ls", namespace=namespace).stdout
    assert info.digest in listing
    assert "layerdiff.test/origin=remote" in listing


def test_remote_store_reads_what_ctr_ingested(
    containerd: Containerd, channel: grpc.Channel
) -> None:
    store, namespace = new_store(containerd, channel)
    data = os.urandom(1 << 20).hex().encode()
    digest = containerd.ingest_kept("from-ctr", data, namespace=namespace, labels=["origin=ctr"])
    assert digest == digest_of(data)
    info = store.info(digest)
    assert (info.size, dict(info.labels)) == (
        len(data), {"origin": "ctr", "containerd.io/gc.root": "test"}
    )
    with store.reader(digest) as reader:
        assert reader.read() == data


def test_unreachable_daemon_is_unavailable(tmp_path: Path) -> None:
    with grpc.insecure_channel(f"unix://{tmp_path}/no.sock") as channel:
        store = RemoteStore(channel, "default")
        with pytest.raises(UnavailableError):
            store.info("sha256:" + "1" * 64)
        with pytest.raises(UnavailableError):
            store.writer("ref")


def test_a_namespace_is_required(tmp_path: Path) -> None:
    with (
        grpc.insecure_channel(f"unix://{tmp_path}/no.sock") as channel,
        pytest.raises(InvalidArgumentError),
    ):
        RemoteStore(channel, "")
