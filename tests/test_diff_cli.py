"""``layerdiff diff``: descriptors, standard output, no partial files, and the same bytes
for the same trees whatever the clock, the umask or the time zone."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backports import zstd

from layerdiff import DiffOptions, diff_trees
from layerdiff.archive.changes import Tree
from layerdiff.cli import main
from layerdiff.cli.diff_cmd import split_lowerdirs
from layerdiff.compression import Compression
from layerdiff.errors import InvalidArgumentError, TreeReadError

T = 1_600_000_000_123_456_789


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layerdiff(
    *args: str, env: dict[str, str] | None = None, umask: int | None = None
) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "layerdiff", *args]
    if umask is not None:
        command = ["sh", "-c", f"umask {umask:03o} && exec \"$@\"", "sh", *command]
    return subprocess.run(
        command, capture_output=True, check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for root in (lower, upper):
        (root / "etc").mkdir(parents=True)
        (root / "etc/passwd").write_text("root:x:0:0\n")
        (root / "gone").write_text("bye")
    (upper / "etc/passwd").write_text("root:x:0:0\nuser:x:1000:1000\n")
    (upper / "gone").unlink()
    (upper / "new").write_bytes(bytes(range(256)) * 100)
    (upper / "link").symlink_to("new")
    for root in (lower, upper):
        for top, dirs, files in os.walk(root):
            for name in dirs + files:
                os.utime(Path(top, name), ns=(T, T), follow_symlinks=False)
    os.utime(upper / "etc/passwd", ns=(T, T + 1))
    return lower, upper


@pytest.mark.parametrize(
    ("compression", "media_type", "decompress"),
    [
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip", gzip.decompress),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd", zstd.decompress),
        ("none", "application/vnd.oci.image.layer.v1.tar", lambda b: b),
    ],
)
def test_json_prints_the_descriptor_of_the_written_blob(
    trees: tuple[Path, Path], tmp_path: Path, compression: str, media_type: str,
    decompress: object,
) -> None:
    lower, upper = trees
    out = tmp_path / "layer"
    result = layerdiff("diff", "--json", "--compression", compression, str(lower), str(upper),
                       "-o", str(out))
    assert result.returncode == 0, result.stderr
    blob = out.read_bytes()
    tar = decompress(blob)  # type: ignore[operator]
    assert json.loads(result.stdout) == {
        "mediaType": media_type,
        "digest": sha(blob),
        "size": len(blob),
        "annotations": {"containerd.io/uncompressed": sha(tar)},
    }
    assert result.stderr == b""


def test_gzip_is_the_default_and_standard_output_takes_the_layer(
    trees: tuple[Path, Path],
) -> None:
    lower, upper = trees
    result = layerdiff("diff", str(lower), str(upper), "-o", "-")
    assert result.returncode == 0, result.stderr
    digest, size, media_type = result.stderr.decode().split()
    assert (digest, int(size)) == (sha(result.stdout), len(result.stdout))
    assert media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert b"etc/passwd" in gzip.decompress(result.stdout)


def test_the_output_file_is_made_as_open_would(trees: tuple[Path, Path], tmp_path: Path) -> None:
    lower, upper = trees
    out = tmp_path / "layer.tar.gz"
    assert layerdiff("diff", str(lower), str(upper), "-o", str(out), umask=0o027).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o640


def test_a_failed_diff_leaves_no_file_and_keeps_an_old_one(
    trees: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lower, upper = trees
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "old.tar.gz").write_bytes(b"old layer")

    def broken(self: Tree, rel: str):  # type: ignore[no-untyped-def]
        yield b"x" * 10
        raise TreeReadError(f"cannot read {rel!r}: Input/output error")

    monkeypatch.setattr(Tree, "read", broken)
    for name in ("new.tar.gz", "old.tar.gz"):
        assert main(["diff", str(lower), str(upper), "-o", str(outdir / name)]) == 1
        err = capsys.readouterr().err
        assert err == "layerdiff: error: cannot read 'etc/passwd': Input/output error\n"
    assert sorted(p.name for p in outdir.iterdir()) == ["old.tar.gz"]
    assert (outdir / "old.tar.gz").read_bytes() == b"old layer"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--level", "30"], "gzip level must be 0-9, not 30"),
        (["--compression", "none", "--level", "1"], "a compression level needs gzip or zstd"),
        (["--userxattr"], "userxattr applies to an overlay upperdir only"),
    ],
)
def test_bad_options_are_one_line_errors(
    trees: tuple[Path, Path], tmp_path: Path, args: list[str], message: str
) -> None:
    lower, upper = trees
    result = layerdiff("diff", *args, str(lower), str(upper), "-o", str(tmp_path / "x"))
    assert (result.returncode, result.stderr.decode()) == (1, f"layerdiff: error: {message}\n")
    assert not (tmp_path / "x").exists()


def test_output_is_required(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    assert layerdiff("diff", str(lower), str(upper)).returncode == 2


def test_source_date_epoch_comes_from_the_environment_too(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    from_env = layerdiff("diff", str(lower), str(upper), "-o", "-",
                         env={"SOURCE_DATE_EPOCH": "1000"})
    from_flag = layerdiff("diff", "--source-date-epoch", "1000", str(lower), str(upper), "-o", "-")
    plain = layerdiff("diff", str(lower), str(upper), "-o", "-")
    assert from_env.stdout == from_flag.stdout != plain.stdout
    bad = layerdiff("diff", str(lower), str(upper), "-o", "-", env={"SOURCE_DATE_EPOCH": "x"})
    assert bad.stderr == b"layerdiff: error: invalid SOURCE_DATE_EPOCH 'x'\n"


def test_lowerdirs_are_given_as_overlay_does() -> None:
    assert split_lowerdirs("/a:/b") == ["/a", "/b"]
    assert split_lowerdirs(r"/with\:colon:/b\\c") == ["/with:colon", r"/b\c"]
    with pytest.raises(InvalidArgumentError, match="empty directory name"):
        split_lowerdirs("/a::/b")


def test_upper_overlay_on_the_command_line(tmp_path: Path) -> None:
    lower1, lower2, upper = tmp_path / "l1", tmp_path / "l2", tmp_path / "u"
    for d in (lower1, lower2, upper):
        d.mkdir()
    (lower2 / "from-2").write_text("2")
    (upper / "new").write_text("n")
    result = layerdiff("diff", "--upper-overlay", "--compression", "none",
                       f"{lower1}:{lower2}", str(upper), "-o", "-")
    assert result.returncode == 0, result.stderr
    assert b"new" in result.stdout and b"from-2" not in result.stdout


# ------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("compression", list(Compression))
def test_the_same_trees_give_the_same_bytes_whatever_the_clock(
    trees: tuple[Path, Path], compression: Compression, monkeypatch: pytest.MonkeyPatch
) -> None:
    lower, upper = trees
    layers = []
    for now in (0.0, 4_000_000_000.5):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        monkeypatch.setattr(time, "time_ns", lambda now=now: int(now * 1e9))
        out = io.BytesIO()
        diff_trees(lower, upper, out, DiffOptions(compression=compression))
        layers.append(out.getvalue())
    assert layers[0] == layers[1]
    if compression is Compression.GZIP:
        assert layers[0][4:8] == bytes(4)  # no time in the gzip header


def test_the_same_trees_give_the_same_bytes_whatever_the_umask_and_zone(
    trees: tuple[Path, Path],
) -> None:
    lower, upper = trees
    runs = [
        layerdiff("diff", str(lower), str(upper), "-o", "-", umask=umask, env={"TZ": zone})
        for umask, zone in ((0o022, "UTC"), (0o077, "Asia/Kolkata"), (0o000, "America/Lima"))
    ]
    assert all(run.returncode == 0 for run in runs)
    assert runs[0].stdout == runs[1].stdout == runs[2].stdout


def test_the_layer_is_neither_written_into_a_compared_tree_nor_to_a_terminal(
    trees: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lower, upper = trees
    assert main(["diff", str(lower), str(upper), "-o", str(upper / "etc/layer.tgz")]) == 1
    assert "is inside the tree" in capsys.readouterr().err
    assert not (upper / "etc/layer.tgz").exists()
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["diff", str(lower), str(upper), "-o", "-"]) == 1
    assert capsys.readouterr().err == (
        "layerdiff: error: a layer is not for a terminal: give -o FILE or a pipe\n"
    )
