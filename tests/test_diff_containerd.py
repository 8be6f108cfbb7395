"""layerdiff's comparer writes the layer containerd 1.7's walking differ writes.

containerd compares two snapshots of its native snapshotter (``ctr snapshots diff``);
layerdiff compares the very same two directories. With ``SOURCE_DATE_EPOCH=0`` every time
in both layers is 0 and the two streams must be identical, byte for byte: the same
entries in the same order with the same headers (Go's ustar/PAX choices included).

Without it, the entries must match in everything but what layerdiff does differently on
purpose (docs/diff.md): it keeps nanoseconds where containerd cuts times to the second,
it writes every xattr where containerd writes only ``security.capability``, and its
whiteouts have time 0 (containerd 2.x's) where containerd 1.7 writes the wall clock. The
last test shows the changes that only layerdiff sees.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from layerdiff import DiffOptions, diff_trees
from layerdiff.archive.tarstream import ChunkReader, TarReader
from layerdiff.compression import Compression
from tests.support.containerd import Containerd
from tests.support.containerd_diff import containerd_diff

pytestmark = [pytest.mark.containerd, pytest.mark.root]

NS = 1_000_000_000
# security.capability for cap_net_raw, effective (VFS_CAP_REVISION_2).
CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def _write(root: Path, rel: str, data: bytes = b"x", mode: int = 0o644) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def rootfs(root: Path) -> None:
    """A small root file system."""
    _write(root, "etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
    _write(root, "etc/group", b"root:x:0:\n")
    _write(root, "usr/bin/sh", b"\x7fELF" + bytes(3000), 0o755)
    _write(root, "usr/bin/ping", b"\x7fELF ping", 0o755)
    os.link(root / "usr/bin/sh", root / "usr/bin/dash")
    _write(root, "usr/lib/os-release", b"ID=test\n")
    (root / "lib").symlink_to("usr/lib")
    _write(root, "var/lib/dpkg/status", b"Package: base\n" * 50)
    _write(root, "var/cache/apt/pkgcache.bin", bytes(10000))
    _write(root, "var/log/old.log", b"old")
    _write(root, "home/user/.profile", b"PS1=$ ")
    os.chown(root / "home/user", 1000, 1000)
    os.chown(root / "home/user/.profile", 1000, 1000)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))


def package_install(root: Path) -> None:
    """What installing and configuring a package does."""
    with open(root / "etc/passwd", "a") as f:
        f.write("app:x:1000:1000::/home/app:/bin/sh\n")
    _write(root, "etc/app/app.conf", b"port=80\n", 0o640)
    os.chown(root / "etc/app/app.conf", 0, 1000)
    _write(root, "usr/bin/app", b"\x7fELF app", 0o4755)
    os.setxattr(root / "usr/bin/ping", "security.capability", CAP_NET_RAW)
    os.link(root / "usr/bin/app", root / "usr/bin/app-hardlink")
    os.link(root / "usr/bin/sh", root / "usr/bin/0-sh-link")  # a new link to an old file
    (root / "usr/bin/app-symlink").symlink_to("/usr/bin/app")
    (root / "usr/lib/os-release").unlink()
    (root / "usr/lib/os-release").symlink_to("../../etc/os-release")
    _write(root, "etc/os-release", b"ID=test\nVERSION=2\n")
    shutil.rmtree(root / "var/cache/apt")
    (root / "var/log/old.log").unlink()
    _write(root, "var/log/old.log/now-a-dir", b"log")
    shutil.rmtree(root / "home/user")
    _write(root, "home/user", b"not a directory any more")
    long_dir = "usr/share/" + "a-very-long-directory-name-" * 4
    _write(root, f"{long_dir}/{'and-a-long-file-name-' * 3}.txt", b"long")
    _write(root, "usr/share/doc/naïve-ünïcode", b"utf-8")
    os.mkfifo(root / "run-fifo")
    (root / "tmp").chmod(0o1770)
    os.mknod(root / "dev/zero", 0o666 | 0o020000, os.makedev(1, 5))


def whole_seconds(root: Path) -> None:
    """Times without nanoseconds, so that containerd's truncation loses nothing."""
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(Path(top, name))
            seconds = st.st_mtime_ns // NS * NS
            os.utime(Path(top, name), ns=(seconds, seconds), follow_symlinks=False)


def _trees(tmp_path: Path, change: Callable[[Path], None]) -> tuple[Path, Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    rootfs(lower)
    whole_seconds(lower)
    subprocess.run(["cp", "-a", f"{lower}/.", str(upper)], check=True)
    change(upper)
    return lower, upper


def _layer(lower: Path, upper: Path, **options: Any) -> bytes:
    out = io.BytesIO()
    diff_trees(lower, upper, out, DiffOptions(compression=Compression.NONE, **options))
    return out.getvalue()


def entries(layer: bytes) -> list[dict[str, Any]]:
    """Every entry of a layer with everything an applier reads from it."""
    reader = TarReader(ChunkReader(iter([layer])))
    found = []
    while (h := reader.next()) is not None:
        found.append({
            "name": h.name, "type": h.typeflag, "mode": h.mode, "uid": h.uid, "gid": h.gid,
            "size": h.size, "mtime_ns": h.mtime_ns, "linkname": h.linkname,
            "dev": (h.devmajor, h.devminor), "xattrs": dict(h.xattrs()),
            "data": b"".join(bytes(piece) for piece in reader.data()),
        })
    return found


@pytest.mark.parametrize(
    "change",
    [package_install, lambda root: None],
    ids=["package install", "no change"],
)
def test_with_source_date_epoch_0_the_layers_are_identical(
    containerd: Containerd, tmp_path: Path, change: Callable[[Path], None]
) -> None:
    lower, upper = _trees(tmp_path, change)
    theirs = containerd_diff(containerd, lower, upper, source_date_epoch=0)
    ours = _layer(theirs.lower, theirs.upper, source_date_epoch=0)
    assert entries(ours) == entries(theirs.layer)
    assert ours == theirs.layer


def _as_containerd_writes(entry: dict[str, Any], epoch: int | None) -> dict[str, Any]:
    """What containerd 1.7 would write for layerdiff's ``entry`` (docs/diff.md)."""
    entry = dict(entry)
    entry["mtime_ns"] = entry["mtime_ns"] // NS * NS
    entry["xattrs"] = {k: v for k, v in entry["xattrs"].items() if k == "security.capability"}
    if "/.wh." in "/" + entry["name"]:
        entry["mtime_ns"] = None if epoch is None else epoch * NS  # 1.7: the wall clock
    return entry


@pytest.mark.parametrize("epoch", [None, 1_700_000_000])
def test_entries_match_but_for_nanoseconds_xattrs_and_whiteout_times(
    containerd: Containerd, tmp_path: Path, epoch: int | None
) -> None:
    def change(root: Path) -> None:
        package_install(root)
        os.setxattr(root / "etc/os-release", "user.origin", b"pkg")
        os.utime(root / "etc/group", ns=(0, 1_800_000_000_123_456_789))  # after the epoch

    lower, upper = _trees(tmp_path, change)
    theirs = containerd_diff(containerd, lower, upper, source_date_epoch=epoch)
    ours = entries(_layer(theirs.lower, theirs.upper, source_date_epoch=epoch))
    expected = entries(theirs.layer)
    if epoch is None:
        for entry in expected:
            if "/.wh." in "/" + entry["name"]:
                entry["mtime_ns"] = None
    assert [_as_containerd_writes(e, epoch) for e in ours] == expected
    by_name = {e["name"]: e for e in ours}
    assert by_name["etc/os-release"]["xattrs"] == {"user.origin": b"pkg"}
    if epoch is None:
        assert by_name["etc/passwd"]["mtime_ns"] % NS  # nanoseconds kept
    else:
        assert by_name["etc/group"]["mtime_ns"] == epoch * NS
        assert by_name["var/cache/.wh.apt"]["mtime_ns"] == 0


def test_what_only_layerdiff_sees(containerd: Containerd, tmp_path: Path) -> None:
    def change(root: Path) -> None:
        os.utime(root / "usr/bin/ping", ns=(0, 1_600_000_000 * NS))  # both see this one
        os.utime(root / "var/lib", ns=(0, 1_600_000_000 * NS))  # a directory's time only
        os.setxattr(root / "var/log", "user.k", b"v")  # a directory's xattr only
        (root / "lib").unlink()
        (root / "lib").symlink_to("usr/lob")  # a new target of the same length...

    lower, upper = _trees(tmp_path, change)
    same_time = 1_600_000_000 * NS + 123
    for tree in (lower, upper):  # ...and the same nanosecond time
        os.utime(tree / "lib", ns=(0, same_time), follow_symlinks=False)
    theirs = containerd_diff(containerd, lower, upper, source_date_epoch=0)
    ours = _layer(theirs.lower, theirs.upper, source_date_epoch=0)
    assert [e["name"] for e in entries(theirs.layer)] == ["usr/", "usr/bin/", "usr/bin/ping"]
    assert [e["name"] for e in entries(ours)] == [
        "lib", "usr/", "usr/bin/", "usr/bin/ping", "var/", "var/lib/", "var/log/",
    ]
