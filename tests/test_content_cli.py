"""``layerdiff content``, ``apply --store`` and ``diff --store`` at a shell."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from layerdiff.content import LocalStore

LABEL = "containerd.io/uncompressed"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layerdiff(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "layerdiff", *args], input=stdin, capture_output=True,
        check=False, env={**os.environ, "LAYERDIFF_STORE": "/nonexistent/not-used"},
    )


def ok(*args: str, stdin: bytes = b"") -> str:
    result = layerdiff(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""
    return result.stdout.decode()


def tar_layer(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def test_ingest_ls_info_label_get_rm(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    blob = b"some blob\n" * 50
    digest = sha(blob)
    info = json.loads(ok("content", "--store", store, "ingest", "--json", "--label", "a=1",
                         "--expected-digest", digest, "r1", stdin=blob))
    assert (info["digest"], info["size"], info["labels"]) == (digest, len(blob), {"a": "1"})
    assert ok("content", "--store", store, "ls", "-q").split() == [digest]
    assert ok("content", "--store", store, "ls", "-q", "--filter", "labels.b").split() == []
    assert ok("content", "--store", store, "label", digest, "b=2", "a=").split() == ["b=2"]
    assert "label:   b=2" in ok("content", "--store", store, "info", digest)
    out = tmp_path / "out"
    ok("content", "--store", store, "get", digest, "-o", str(out))
    assert out.read_bytes() == blob
    ok("content", "--store", store, "rm", digest)
    result = layerdiff("content", "--store", store, "info", digest)
    assert result.returncode == 1
    assert result.stderr.decode() == f"layerdiff: error: content {digest} not found\n"


def test_ingest_with_a_wrong_digest_names_both_and_can_be_aborted(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    wrong = sha(b"other")
    result = layerdiff("content", "--store", store, "ingest", "--expected-digest", wrong,
                       "bad", stdin=b"data")
    message = result.stderr.decode()
    assert result.returncode == 1
    assert wrong in message
    assert sha(b"data") in message
    assert message.count("\n") == 1
    assert ok("content", "--store", store, "ls", "-q") == ""
    assert json.loads(ok("content", "--store", store, "active", "--json"))[0]["ref"] == "bad"
    ok("content", "--store", store, "abort", "bad")
    assert json.loads(ok("content", "--store", store, "active", "--json")) == []


def test_get_refuses_a_blob_damaged_on_disk(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as store:
        writer = store.writer("r")
        writer.write(b"original")
        path = store.blob_path(writer.commit().digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    result = layerdiff("content", "--store", str(tmp_path), "get", sha(b"original"), "-o",
                       str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"blob has digest {sha(b'tampered')}, expected {sha(b'original')}" in (
        result.stderr.decode()
    )


def test_diff_into_a_store_then_apply_from_it(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    (upper / "hello").write_text("world\n")
    store = tmp_path / "store"
    desc = json.loads(ok("diff", "--store", str(store), "--label", "app=test", "--json",
                         str(lower), str(upper)))
    with LocalStore(store) as opened:
        info = opened.info(desc["digest"])
        assert info.size == desc["size"]
        assert info.labels == {"app": "test", LABEL: desc["annotations"][LABEL]}
        assert opened.list_statuses() == []
    dest = tmp_path / "dest"
    dest.mkdir()
    applied = json.loads(ok("apply", "--json", "--store", str(store), desc["digest"], str(dest)))
    assert applied["digest"] == desc["annotations"][LABEL]
    assert (dest / "hello").read_text() == "world\n"


def test_apply_from_a_store_checks_the_blob_digest(tmp_path: Path) -> None:
    layer = tar_layer({"f": b"x"})
    with LocalStore(tmp_path / "store") as store:
        writer = store.writer("r")
        writer.write(layer)
        path = store.blob_path(writer.commit().digest)
    os.chmod(path, 0o644)
    path.write_bytes(tar_layer({"f": b"y"}))  # valid, but not the blob named
    dest = tmp_path / "dest"
    dest.mkdir()
    result = layerdiff("apply", "--store", str(tmp_path / "store"), sha(layer), str(dest))
    assert result.returncode == 1
    assert f"expected {sha(layer)}" in result.stderr.decode()


@pytest.mark.parametrize("args", [["ls"], ["info", "sha256:nope"]])
def test_bad_digests_and_missing_stores_are_one_line_errors(
    tmp_path: Path, args: list[str]
) -> None:
    result = layerdiff("content", "--store", str(tmp_path / "s"), *args)
    if args == ["ls"]:
        assert result.returncode == 0  # a new store is empty
    else:
        assert (result.returncode, result.stderr.decode()) == (
            1, "layerdiff: error: invalid digest 'sha256:nope'\n")


def test_diff_needs_exactly_one_destination(tmp_path: Path) -> None:
    assert layerdiff("diff", str(tmp_path), str(tmp_path)).returncode == 2
    both = layerdiff("diff", "-o", "x", "--store", "y", str(tmp_path), str(tmp_path))
    assert both.returncode == 2
