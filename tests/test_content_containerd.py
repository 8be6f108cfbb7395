"""A content root shared with a real containerd 1.7: each side reads what the other wrote."""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from layerdiff.content import LocalStore
from tests.support.containerd import Containerd

pytestmark = [pytest.mark.containerd, pytest.mark.root]


def content_root(daemon: Containerd) -> LocalStore:
    return LocalStore(daemon.root / "io.containerd.content.v1.content")


def test_containerd_reads_a_blob_layerdiff_committed(containerd: Containerd) -> None:
    data = b"written by layerdiff\n" * 500
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with content_root(containerd) as store:
        writer = store.writer("layerdiff-ref")
        writer.write(data)
        writer.commit(len(data), digest)
        blob = store.blob_path(digest)
    # containerd's metadata knows blobs per namespace; with its default "shared" policy an
    # ingest of a digest already in the content root adopts the blob without its bytes
    # (ctr seeks its input to the blob's size, so it is given the blob itself).
    namespace = "shared-content"
    containerd.ingest_kept("adopt", blob, namespace=namespace)
    listed = containerd.ctr("content", "ls", "-q", namespace=namespace).stdout.split()
    assert digest in listed
    got = subprocess.run(
        [str(containerd.bindir / "ctr"), "--address", str(containerd.socket),
         "--namespace", namespace, "content", "get", digest],
        check=True, capture_output=True, timeout=60,
    ).stdout
    assert got == data


def test_layerdiff_reads_a_blob_containerd_ingested(containerd: Containerd) -> None:
    data = b"written by containerd\n" * 300
    digest = containerd.ingest_kept("from-ctr", data)
    with content_root(containerd) as store:
        assert store.info(digest).size == len(data)
        with store.reader(digest) as reader:
            assert reader.read_at(22, 22) == data[22:44]
            assert reader.read() == data
        assert digest in {info.digest for info in store.walk()}


def test_layerdiff_resumes_an_ingest_containerd_left(containerd: Containerd) -> None:
    """An interrupted ``ctr content ingest`` leaves an ingest layerdiff can finish."""
    data = b"0123456789" * 1000
    # ctr's writer keeps its ingest when the input ends short of the expected size.
    result = containerd.ctr(
        "content", "ingest", "--expected-size", str(len(data)), "left-by-ctr",
        stdin=data[:4000], check=False,
    )
    assert result.returncode != 0
    with content_root(containerd) as store:
        # containerd's metadata layer names its ingests "<namespace>/<id>/<ref>".
        [status] = store.list_statuses(["ref~=|^default/[0-9]+/left-by-ctr$|"])
        assert status.offset == 4000
        assert status.total == len(data)
        writer = store.writer(status.ref)
        assert writer.offset == 4000
        writer.write(data[4000:])
        info = writer.commit(len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    assert info.size == len(data)
