"""The local content store: containerd's layout, verified atomic commits, resumable ingests."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from layerdiff.content import Info, LocalStore
from layerdiff.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put(store: LocalStore, data: bytes, ref: str = "ref", **labels: str) -> Info:
    writer = store.writer(ref)
    writer.write(data)
    return writer.commit(len(data), digest_of(data), labels)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "content")


def test_committed_blob_is_read_only_in_containerds_layout(store: LocalStore) -> None:
    data = b"layer bytes" * 1000
    info = put(store, data)
    path = store.root / "blobs" / "sha256" / hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data
    assert os.stat(path).st_mode & 0o222 == 0
    assert (info.digest, info.size) == (digest_of(data), len(data))
    assert os.listdir(store.root / "ingest") == []


def test_reader_reads_by_offset_and_sequentially(store: LocalStore) -> None:
    data = bytes(range(256)) * 64
    put(store, data)
    with store.reader(digest_of(data)) as reader:
        assert reader.size == len(data)
        assert reader.read_at(300, 10) == data[300:310]
        assert reader.read_at(len(data) - 3, 10) == data[-3:]
        assert reader.read(100) == data[:100]
        assert reader.read() == data[100:]
        assert reader.read(5) == b""


def test_commit_with_wrong_digest_names_both_and_keeps_the_ingest(store: LocalStore) -> None:
    writer = store.writer("bad")
    writer.write(b"actual")
    wrong = digest_of(b"expected")
    with pytest.raises(FailedPreconditionError) as caught:
        writer.commit(6, wrong)
    assert digest_of(b"actual") in str(caught.value)
    assert wrong in str(caught.value)
    assert not (store.root / "blobs" / "sha256").exists()
    assert store.status("bad").offset == 6
    store.abort("bad")
    with pytest.raises(NotFoundError):
        store.status("bad")


def test_commit_with_wrong_size_is_refused(store: LocalStore) -> None:
    writer = store.writer("short")
    writer.write(b"12345")
    with pytest.raises(FailedPreconditionError, match="holds 5 bytes, expected 6"):
        writer.commit(6)


def test_existing_blob_is_not_written_twice(store: LocalStore) -> None:
    put(store, b"once")
    with pytest.raises(AlreadyExistsError):
        store.writer("again", expected=digest_of(b"once"))
    writer = store.writer("again")
    writer.write(b"once")
    with pytest.raises(AlreadyExistsError):
        writer.commit()
    assert store.list_statuses() == []


def test_closed_ingest_resumes_where_it_stopped(store: LocalStore) -> None:
    writer = store.writer("resume", total=10)
    writer.write(b"01234")
    writer.close()
    status = store.status("resume")
    assert (status.ref, status.offset, status.total) == ("resume", 5, 10)
    again = store.writer("resume")
    assert again.offset == 5
    again.write(b"56789")
    assert again.digest() == digest_of(b"0123456789")
    assert again.commit(10, digest_of(b"0123456789")).size == 10


def test_truncate_restarts_the_ingest(store: LocalStore) -> None:
    writer = store.writer("t")
    writer.write(b"garbage")
    writer.truncate()
    writer.write(b"good")
    assert writer.commit(4, digest_of(b"good")).size == 4


def test_second_writer_of_a_ref_is_refused_in_process(store: LocalStore) -> None:
    writer = store.writer("busy")
    with pytest.raises(UnavailableError, match="busy"):
        store.writer("busy")
    with pytest.raises(UnavailableError):
        store.abort("busy")
    writer.close()
    store.writer("busy").close()


_CHUNK = bytes(range(256)) * 4096  # 1 MiB
_CHILD = textwrap.dedent(
    """
    import sys
    from layerdiff.content import LocalStore
    writer = LocalStore(sys.argv[1]).writer("killed")
    chunk = bytes(range(256)) * 4096
    print("writing", flush=True)
    for _ in range(int(sys.argv[2])):
        writer.write(chunk)
        writer._file.flush()
    print("done", flush=True)
    sys.stdin.read()
    """
)


def _start_writer(store: LocalStore, chunks: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(store.root), str(chunks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "writing\n"
    return child


def test_other_process_holding_a_ref_is_refused(store: LocalStore) -> None:
    child = _start_writer(store, 1)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "done\n"
        with pytest.raises(UnavailableError):
            store.writer("killed")
    finally:
        child.kill()
        child.wait()
    store.writer("killed").close()  # the lock died with the process


def test_sigkill_mid_write_leaves_no_blob_and_the_ingest_resumes(store: LocalStore) -> None:
    chunks = 512
    child = _start_writer(store, chunks)
    deadline = time.monotonic() + 30
    while store.status("killed").offset < 4 * len(_CHUNK) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (store.root / "blobs").exists()
    assert list(store.walk()) == []
    whole = _CHUNK * chunks
    writer = store.writer("killed")
    assert 0 < writer.offset < len(whole)
    writer.write(whole[writer.offset :])
    info = writer.commit(len(whole), digest_of(whole))
    assert info.digest == digest_of(whole)
    with store.reader(info.digest) as reader:
        assert hashlib.sha256(reader.read()).hexdigest() == info.digest[7:]


def test_concurrent_commits_of_one_digest_publish_one_blob(store: LocalStore) -> None:
    data = os.urandom(1 << 16)
    outcomes: list[str] = []

    def write(ref: str) -> None:
        writer = store.writer(ref)
        writer.write(data)
        try:
            writer.commit(len(data), digest_of(data))
            outcomes.append("committed")
        except AlreadyExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=write, args=(f"ref{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "committed" in outcomes
    assert len(outcomes) == 8
    assert [i.digest for i in store.walk()] == [digest_of(data)]
    assert store.list_statuses() == []


def test_labels_survive_a_new_store_instance(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        info = put(store, b"x", **{"containerd.io/uncompressed": digest_of(b"y")})
    with LocalStore(tmp_path) as again:
        assert again.info(info.digest).labels == {"containerd.io/uncompressed": digest_of(b"y")}


def test_update_replaces_all_labels_or_only_named_paths(store: LocalStore) -> None:
    info = put(store, b"x", a="1", b="2")
    changed = Info(info.digest, 0, info.created_at, info.updated_at, {"a": "9", "c": "3"})
    assert store.update(changed, ["labels.a", "labels.b"]).labels == {"a": "9"}
    assert store.update(changed).labels == {"a": "9", "c": "3"}
    with pytest.raises(InvalidArgumentError):
        store.update(changed, ["size"])
    too_long = Info(info.digest, 0, info.created_at, info.updated_at, {"k": "v" * 5000})
    with pytest.raises(InvalidArgumentError, match="4096"):
        store.update(too_long)


def test_walk_filters_as_containerd(store: LocalStore) -> None:
    a = put(store, b"a", "r1", **{"containerd.io/uncompressed": "sha256:1", "tag": "v1.2"})
    b = put(store, b"b", "r2", tag="v2.0")
    c = put(store, b"c", "r3")

    def digests(*filters: str) -> set[str]:
        return {i.digest for i in store.walk(filters)}

    assert digests() == {a.digest, b.digest, c.digest}
    assert digests('labels."containerd.io/uncompressed"') == {a.digest}
    assert digests(f"digest=={b.digest}") == {b.digest}
    assert digests("labels.tag~=/^v1[.]/") == {a.digest}
    assert digests("labels.tag!=v2.0") == {a.digest, c.digest}
    assert digests("labels.tag==v2.0", f"digest=={c.digest}") == {b.digest, c.digest}
    assert digests("labels.tag,labels.tag~=v2") == {b.digest}
    with pytest.raises(InvalidArgumentError, match="invalid filter"):
        digests("labels.tag==")


def test_delete_removes_blob_and_labels(store: LocalStore) -> None:
    info = put(store, b"gone", label="x")
    store.delete(info.digest)
    with pytest.raises(NotFoundError):
        store.info(info.digest)
    with pytest.raises(NotFoundError):
        store.delete(info.digest)
    assert put(store, b"gone").labels == {}


def test_malformed_digests_are_refused(store: LocalStore) -> None:
    for bad in ("sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64, "../../etc/passwd"):
        with pytest.raises(InvalidArgumentError, match="invalid digest"):
            store.info(bad)


def test_ingest_of_a_containerd_layout_is_resumed(store: LocalStore) -> None:
    """An ingest folder as containerd writes it (RFC 3339 nanosecond times) resumes."""
    folder = store.ingest_dir("from-containerd")
    folder.mkdir(parents=True)
    (folder / "ref").write_text("from-containerd")
    (folder / "startedat").write_text("2024-05-01T10:11:12.123456789Z")
    (folder / "updatedat").write_text("2024-05-01T10:11:13.5+02:00")
    (folder / "total").write_text("6")
    (folder / "data").write_bytes(b"abc")
    status = store.status("from-containerd")
    assert (status.offset, status.total, status.started_at.year) == (3, 6, 2024)
    writer = store.writer("from-containerd")
    writer.write(b"def")
    assert writer.commit(6, digest_of(b"abcdef")).size == 6
