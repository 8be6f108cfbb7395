"""Helpers over any store: copying blobs in, committing new layers, verified reads."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from layerdiff.content import LocalStore, Writer
from layerdiff.content.ingest import VerifiedReader, commit_layer, write_blob
from layerdiff.errors import CorruptLayerError, TreeReadError
from layerdiff.oci import LABEL_UNCOMPRESSED, Descriptor


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def producer(
    blob: bytes, tar_digest: str = "sha256:" + "1" * 64
) -> Callable[[Writer], Descriptor]:
    def produce(out: Writer) -> Descriptor:
        out.write(blob)
        return Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", sha(blob), len(blob),
                          {LABEL_UNCOMPRESSED: tar_digest})
    return produce


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def test_commit_layer_labels_the_blob_with_its_diffid(store: LocalStore) -> None:
    desc = commit_layer(store, producer(b"layer"), labels={"app": "x"})
    assert store.info(desc.digest).labels == {"app": "x", LABEL_UNCOMPRESSED: "sha256:" + "1" * 64}
    assert store.list_statuses() == []


def test_a_failed_layer_leaves_no_ingest_and_no_blob(store: LocalStore) -> None:
    def failing(out: Writer) -> Descriptor:
        out.write(b"half a layer")
        raise TreeReadError("the tree changed while it was read")

    with pytest.raises(TreeReadError):
        commit_layer(store, failing)
    assert store.list_statuses() == []
    assert list(store.walk()) == []


def test_an_existing_layer_gains_a_missing_uncompressed_label(store: LocalStore) -> None:
    write_blob(store, "plain", io.BytesIO(b"layer"))
    assert store.info(sha(b"layer")).labels == {}
    commit_layer(store, producer(b"layer"))
    assert store.info(sha(b"layer")).labels == {LABEL_UNCOMPRESSED: "sha256:" + "1" * 64}


def test_a_given_ref_is_truncated_before_writing(store: LocalStore) -> None:
    left = store.writer("my-ref")
    left.write(b"leftover from a crash")
    left.close()
    desc = commit_layer(store, producer(b"fresh"), ref="my-ref")
    assert desc.digest == sha(b"fresh")
    with store.reader(desc.digest) as reader:
        assert reader.read() == b"fresh"


def test_write_blob_resumes_an_interrupted_ingest(store: LocalStore) -> None:
    data = b"abcdefghij" * 100
    writer = store.writer("resumed")
    writer.write(data[:321])
    writer.close()
    info = write_blob(store, "resumed", io.BytesIO(data), size=len(data), digest=sha(data))
    assert info.digest == sha(data)
    assert write_blob(store, "again", io.BytesIO(b"ignored"), digest=sha(data)) == info


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        (b"abc", 3, None),
        (b"abcd", 3, "longer than its expected 3 bytes"),
        (b"ab", 3, "has 2 bytes, expected 3"),
        (b"abd", 3, f"blob has digest {sha(b'abd')}, expected {sha(b'abc')}"),
    ],
)
def test_verified_reader(data: bytes, size: int, message: str | None) -> None:
    reader = VerifiedReader(io.BytesIO(data), sha(b"abc"), size)
    if message is None:
        assert reader.read(2) + reader.read(5) + reader.read() == b"abc"
        return
    with pytest.raises(CorruptLayerError, match=message):
        while reader.read(1):
            pass
