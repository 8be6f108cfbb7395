"""The oracle harness itself: containerd really unpacks, and tree snapshots see every change.

If these fail, the comparisons built on the harness (test_containerd_compat.py,
test_overlay_form.py) prove nothing, whichever way they go.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.containerd import Containerd, ContainerdUnpackError
from tests.support.layers import gzip, layer, zstd
from tests.support.tree import diff_trees, merged_view, snapshot_tree

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts)")

T_PASSWD = 1_500_000_000.25  # a fraction: PAX records carry sub-second times
T_MOTD = 1_400_000_000
T_UPPER = 1_650_000_000


def ns(seconds: float) -> int:
    """Seconds (exact in binary, as those above) as nanoseconds."""
    return int(seconds * 1_000_000) * 1000


LOWER = layer(
    ("dir", "etc/"),
    ("file", "etc/passwd", {"data": b"root:x:0:0\n", "mode": 0o640, "gid": 42, "mtime": T_PASSWD}),
    # A hardlink header's metadata is applied to the shared inode: keep it the same.
    ("hardlink", "etc/passwd.hard",
     {"linkname": "etc/passwd", "mode": 0o640, "gid": 42, "mtime": T_PASSWD}),
    ("symlink", "etc/motd", {"linkname": "passwd", "mtime": T_MOTD}),
    ("file", "etc/gone", {"data": b"bye"}),
    ("dir", "opq/"),
    ("file", "opq/old", {"data": b"old"}),
    ("file", "su", {"data": b"su", "mode": 0o4755, "uid": 1000}),
    ("dir", "tmp/", {"mode": 0o1777}),
)
UPPER = layer(
    ("file", "etc/.wh.gone"),
    ("dir", "opq/", {"mtime": T_UPPER}),
    ("file", "opq/.wh..wh..opq"),
    ("file", "opq/new", {"data": b"new"}),
    ("file", "added", {"data": b"added", "mtime": T_UPPER}),
)
FINAL_PATHS = {
    ".", "etc", "etc/passwd", "etc/passwd.hard", "etc/motd", "opq", "opq/new", "su", "tmp",
    "added",
}


def sha256(data: bytes) -> str:
    """Hex digest, as EntryInfo.sha256."""
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ containerd itself

@pytest.mark.containerd
@pytest.mark.root
def test_native_unpack_gives_the_whole_tree_after_each_layer(containerd: Containerd) -> None:
    lower_dir, final_dir = containerd.unpack([LOWER, UPPER], "native")

    base = containerd.root / "io.containerd.snapshotter.v1.native" / "snapshots"
    assert lower_dir.parent == base and final_dir.parent == base
    lower, final = snapshot_tree(lower_dir), snapshot_tree(final_dir)

    assert set(lower) == FINAL_PATHS - {"opq/new", "added"} | {"etc/gone", "opq/old"}
    assert set(final) == FINAL_PATHS  # whited out, hidden by the opaque marker, no .wh.*
    passwd = final["etc/passwd"]
    assert (passwd.kind, passwd.mode, passwd.uid, passwd.gid) == ("file", 0o640, 0, 42)
    assert passwd.sha256 == sha256(b"root:x:0:0\n") and passwd.size == 11
    assert passwd.mtime_ns == ns(T_PASSWD)
    assert final["etc/passwd.hard"] == passwd
    assert passwd.hardlink == "etc/passwd"
    motd = final["etc/motd"]
    assert (motd.kind, motd.target, motd.mtime_ns) == ("symlink", "passwd", ns(T_MOTD))
    assert (final["su"].mode, final["su"].uid) == (0o4755, 1000)  # setuid survives chown
    assert (final["tmp"].kind, final["tmp"].mode) == ("dir", 0o1777)
    assert final["opq"].mtime_ns == ns(T_UPPER)  # set after the layer's entries
    assert final["opq/new"].sha256 == sha256(b"new")
    assert final["added"].mtime_ns == ns(T_UPPER)
    # containerd sets atime to the later of the header's atime and mtime.
    assert final["added"].atime_ns == ns(T_UPPER)


@pytest.mark.containerd
@pytest.mark.root
def test_overlayfs_unpack_gives_each_layers_upperdir(containerd: Containerd) -> None:
    lower_dir, upper_dir = containerd.unpack([LOWER, UPPER], "overlayfs")

    base = containerd.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
    for d in (lower_dir, upper_dir):
        assert d.name == "fs" and d.parent.parent == base
    upper = snapshot_tree(upper_dir)
    assert set(upper) == {".", "etc", "etc/gone", "opq", "opq/new", "added"}
    assert (upper["etc/gone"].kind, upper["etc/gone"].rdev) == ("char", (0, 0))
    assert upper["opq"].xattrs == {"trusted.overlay.opaque": b"y"}
    assert "etc/gone" in snapshot_tree(lower_dir)

    native_final = containerd.unpack([LOWER, UPPER], "native")[-1]
    with merged_view([lower_dir, upper_dir]) as merged:
        problems = diff_trees(
            snapshot_tree(native_final),
            snapshot_tree(merged),
            # Directory atimes are left out: each snapshotter walks the snapshot on
            # Commit to measure its size, so every directory's atime is the time of that
            # commit. Symlink atimes are compared: no path here goes through a symlink.
            # etc has no entry in UPPER: both forms give it the time of the unpack
            # (native when deleting etc/gone, overlay when making the whiteout in its
            # copy of etc). All other times are the layers'.
            ignore_atime_kinds={"dir"},
            ignore_mtime={"etc"},
        )
    assert problems == []


@pytest.mark.containerd
@pytest.mark.root
def test_compressed_layers_unpack_like_plain_ones(containerd: Containerd) -> None:
    plain = containerd.unpack([LOWER, UPPER], "native")
    compressed = containerd.unpack([gzip(LOWER), zstd(UPPER)], "native")

    assert set(plain).isdisjoint(compressed)  # a fresh namespace: nothing shared
    problems = diff_trees(snapshot_tree(plain[-1]), snapshot_tree(compressed[-1]),
                          ignore_mtime={"etc"})
    assert problems == []


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.parametrize("snapshotter", ["native", "overlayfs"])
@pytest.mark.parametrize(
    ("bad_layer", "reason"),
    [
        (layer(("hardlink", "x", {"linkname": "missing"})), "no such file or directory"),
        (layer(("file", ".wh.")), "invalid whiteout name"),
    ],
    ids=["hardlink to a missing file", "bare whiteout"],
)
def test_a_refused_layer_raises_with_containerds_reason(
    containerd: Containerd, snapshotter: str, bad_layer: bytes, reason: str
) -> None:
    with pytest.raises(ContainerdUnpackError, match=reason) as refused:
        containerd.unpack([LOWER, bad_layer], snapshotter)
    assert "failed to extract layer" in refused.value.stderr


@pytest.mark.containerd
@pytest.mark.root
def test_trusted_xattrs_in_a_layer_are_dropped_and_others_kept(containerd: Containerd) -> None:
    xattrs = {"SCHILY.xattr.trusted.x": "t", "SCHILY.xattr.user.overlay.opaque": "y",
              "SCHILY.xattr.user.k": "v"}
    (top,) = containerd.unpack([layer(("file", "f", {"pax_headers": xattrs}))], "native")
    # containerd 1.7 logs "ignored xattr trusted.x in archive" and goes on.
    assert snapshot_tree(top)["f"].xattrs == {"user.overlay.opaque": b"y", "user.k": b"v"}


# ---------------------------------------------------------------- snapshots, diffs

T_OLD = 1_000_000_000_123_456_789  # ns; older than any ctime, so reads would move atimes


def make_tree(root: Path) -> None:
    """A small tree with every kind of interesting metadata, times fixed."""
    (root / "d").mkdir(mode=0o750)
    (root / "d/f").write_bytes(b"content")
    os.chmod(root / "d/f", 0o640)
    os.setxattr(root / "d/f", "user.k", b"v")
    os.link(root / "d/f", root / "d/g")
    (root / "plain").write_bytes(b"plain")
    os.symlink("d/f", root / "s")
    for rel in ("d/f", "plain", "s", "d", "."):
        os.utime(root / rel, ns=(T_OLD, T_OLD), follow_symlinks=False)


def _replace_hardlink(root: Path) -> None:
    os.unlink(root / "d/g")
    shutil.copy2(root / "d/f", root / "d/g")
    for rel in ("d/f", "d/g", "d"):  # the copy read d/f
        os.utime(root / rel, ns=(T_OLD, T_OLD))


def _retarget_symlink(root: Path) -> None:
    os.unlink(root / "s")
    os.symlink("plain", root / "s")
    os.utime(root / "s", ns=(T_OLD, T_OLD), follow_symlinks=False)


def _add_fifo(root: Path) -> None:
    os.mkfifo(root / "d/p")
    os.utime(root / "d", ns=(T_OLD, T_OLD))


def _rewrite(root: Path) -> None:
    (root / "plain").write_bytes(b"PLAIN")  # same size
    os.utime(root / "plain", ns=(T_OLD, T_OLD))


MUTATIONS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "mode of a hardlinked file": (
        lambda r: os.chmod(r / "d/f", 0o600),
        ["d/f: mode expected 0o640, got 0o600", "d/g: mode expected 0o640, got 0o600"],
    ),
    "mtime by one nanosecond": (
        lambda r: os.utime(r / "plain", ns=(T_OLD, T_OLD + 1)),
        [
            "plain: mtime_ns expected 1000000000123456789 (2001-09-09T01:46:40.123456789Z), "
            "got 1000000000123456790 (2001-09-09T01:46:40.123456790Z)"
        ],
    ),
    "atime": (
        lambda r: os.utime(r / "plain", ns=(T_OLD - 10**9, T_OLD)),
        [
            "plain: atime_ns expected 1000000000123456789 (2001-09-09T01:46:40.123456789Z), "
            "got 999999999123456789 (2001-09-09T01:46:39.123456789Z)"
        ],
    ),
    "an added xattr": (
        lambda r: os.setxattr(r / "plain", "user.new", b"1"),
        ["plain: xattr user.new expected None, got b'1'"],
    ),
    "a changed xattr": (
        lambda r: os.setxattr(r / "d/f", "user.k", b"w"),
        ["d/f: xattr user.k expected b'v', got b'w'", "d/g: xattr user.k expected b'v', got b'w'"],
    ),
    "content of the same size": (
        _rewrite,
        [f"plain: sha256 expected {sha256(b'plain')!r}, got {sha256(b'PLAIN')!r}"],
    ),
    "a hardlink made a copy": (
        _replace_hardlink,
        ["d/f: hardlink expected 'd/f', got None", "d/g: hardlink expected 'd/f', got None"],
    ),
    "a symlink's target": (
        _retarget_symlink,
        ["s: size expected 3, got 5", "s: target expected 'd/f', got 'plain'"],
    ),
    "a missing file": (
        lambda r: os.unlink(r / "plain"),
        ["plain: missing (expected a file)"],
    ),
    "an extra fifo": (
        _add_fifo,
        ["d/p: unexpected fifo"],
    ),
}


def test_identical_trees_have_no_differences(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        make_tree(tmp_path / name)

    a, b = snapshot_tree(tmp_path / "a"), snapshot_tree(tmp_path / "b")

    assert diff_trees(a, b, ignore_atime_kinds=()) == []
    assert set(a) == {".", "d", "d/f", "d/g", "plain", "s"}
    assert a["d/f"].hardlink == a["d/g"].hardlink == "d/f"
    assert a["plain"].hardlink is None
    assert a["d"].size is None  # directory sizes depend on the file system
    assert a["d/f"].xattrs == {"user.k": b"v"}
    assert (a["s"].kind, a["s"].target) == ("symlink", "d/f")


@pytest.mark.parametrize(("mutate", "expected"), MUTATIONS.values(), ids=MUTATIONS.keys())
def test_each_kind_of_difference_is_reported(
    tmp_path: Path, mutate: Callable[[Path], None], expected: list[str]
) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        make_tree(tmp_path / name)
    mutate(tmp_path / "b")

    assert diff_trees(snapshot_tree(tmp_path / "a"), snapshot_tree(tmp_path / "b")) == expected


def test_ignore_options(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        make_tree(tmp_path / name)
    os.utime(tmp_path / "b/plain", ns=(1, 2))
    os.utime(tmp_path / "b/d", ns=(3, 4))
    a, b = snapshot_tree(tmp_path / "a"), snapshot_tree(tmp_path / "b")

    assert len(diff_trees(a, b)) == 3  # plain's times, d's mtime
    assert len(diff_trees(a, b, ignore_atime_kinds=())) == 4
    assert diff_trees(a, b, ignore_mtime={"plain"}) == [diff_trees(a, b)[0]]
    assert diff_trees(a, b, ignore={"mtime_ns"}, ignore_atime=True) == []
    assert diff_trees(a, b, ignore_dir_mtimes=True, ignore_atime=True, ignore_mtime={"plain"}) == []
    with pytest.raises(ValueError, match="mtime"):
        diff_trees(a, b, ignore={"mtime"})


def test_a_link_from_outside_the_tree_makes_no_hardlink_group(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree/f").write_bytes(b"f")
    os.link(tmp_path / "tree/f", tmp_path / "outside")

    assert snapshot_tree(tmp_path / "tree")["f"].hardlink is None


@pytest.mark.root
@needs_root
def test_snapshots_change_no_access_time(tmp_path: Path) -> None:
    # relatime would update every atime here (all are older than the ctimes), and
    # listing a directory or reading a symlink happens on every snapshot.
    make_tree(tmp_path)

    first = snapshot_tree(tmp_path)
    second = snapshot_tree(tmp_path)

    assert diff_trees(first, second, ignore_atime_kinds=()) == []
    for rel in ("d", "d/f", "plain", "s"):
        assert first[rel].atime_ns == T_OLD, rel


@pytest.mark.root
@needs_root
def test_merged_view_interprets_whiteouts_and_opaque_markers(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in (lower / "opq", upper / "opq"):
        d.mkdir(parents=True)
    (lower / "gone").write_bytes(b"g")
    (lower / "kept").write_bytes(b"k")
    (lower / "opq/hidden").write_bytes(b"h")
    os.mknod(upper / "gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))  # a whiteout
    os.setxattr(upper / "opq", "trusted.overlay.opaque", b"y")
    (upper / "opq/new").write_bytes(b"n")

    with merged_view([lower, upper]) as merged:
        assert set(snapshot_tree(merged)) == {".", "kept", "opq", "opq/new"}
        assert snapshot_tree(merged)["opq"].xattrs == {}  # overlay hides its own markers
    # One layer: its markers are interpreted too, not shown as devices and xattrs.
    with merged_view([upper]) as merged:
        assert set(snapshot_tree(merged)) == {".", "opq", "opq/new"}
    assert not merged.exists()  # unmounted, or its temporary directory would remain
