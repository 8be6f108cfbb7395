"""The layerdiff command: descriptors on success, one-line errors and exit codes on failure."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "hello-layer.tar.gz"


def layerdiff(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "layerdiff", *args], input=stdin, capture_output=True, check=False
    )


def test_apply_json_prints_exactly_the_applied_descriptor(tmp_path: Path) -> None:
    result = layerdiff("apply", "--json", str(EXAMPLE), str(tmp_path))
    assert result.returncode == 0, result.stderr
    uncompressed = gzip.decompress(EXAMPLE.read_bytes())
    assert json.loads(result.stdout) == {
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": "sha256:" + hashlib.sha256(uncompressed).hexdigest(),
        "size": len(uncompressed),
    }
    assert (tmp_path / "etc" / "motd").read_text().startswith("Hello")
    assert (tmp_path / "bin").readlink() == Path("usr/bin")
    assert (tmp_path / "usr/bin/hi").stat().st_ino == (tmp_path / "usr/bin/hello").stat().st_ino


def test_apply_reads_standard_input(tmp_path: Path) -> None:
    result = layerdiff("apply", "-", str(tmp_path), stdin=EXAMPLE.read_bytes())
    assert result.returncode == 0, result.stderr
    digest, size, media_type = result.stdout.decode().split()
    assert digest.startswith("sha256:") and int(size) > 0
    assert media_type == "application/vnd.oci.image.layer.v1.tar"


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (gzip.compress(b"\x00" * 100)[:-9], "corrupt gzip stream"),
        (b"\xfd7zXZ\x00" + bytes(30), "unsupported layer compression: xz"),
        (b"this is not a tar archive at all" * 20, "invalid tar header"),
    ],
)
def test_bad_layers_fail_with_one_line_and_exit_1(
    tmp_path: Path, layer: bytes, message: str
) -> None:
    result = layerdiff("apply", "-", str(tmp_path), stdin=layer)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert stderr.count("\n") == 1 and stderr.startswith("layerdiff: error: ")
    assert message in stderr
    assert "Traceback" not in stderr


def test_missing_target_and_missing_layer_are_named(tmp_path: Path) -> None:
    result = layerdiff("apply", str(EXAMPLE), str(tmp_path / "nope"))
    assert result.returncode == 1 and b"does not exist" in result.stderr
    result = layerdiff("apply", str(tmp_path / "nope.tar"), str(tmp_path))
    assert result.returncode == 1 and b"nope.tar" in result.stderr


def test_bad_usage_exits_2() -> None:
    assert layerdiff("apply", "--mode", "bogus", "a", "b").returncode == 2
    assert layerdiff().returncode == 2
