"""Snapshots of directory trees, for comparing what two unpackers produced.

A snapshot maps each path (relative, the root as ".") to everything that an unpack
must get right: type, mode bits, owner, times, content, link target, device numbers,
xattrs, and which paths share an inode. Access times of directories and symlinks are
left out: listing a directory or reading a link updates them, so no two unpackers can
be compared on them. File contents are read with O_NOATIME for the same reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class EntryInfo:
    """What an unpacker decided about one path."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int | None
    size: int | None
    sha256: str | None
    target: str | None
    rdev: tuple[int, int] | None
    xattrs: tuple[tuple[str, bytes], ...]
    hardlink: str | None


_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def _content_hash(path: str) -> str:
    digest = hashlib.sha256()
    flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NOATIME if os.geteuid() == 0 else 0)
    fd = os.open(path, flags)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))


def snapshot_tree(root: str | os.PathLike[str]) -> dict[str, EntryInfo]:
    """Everything observable about the tree under ``root``."""
    root = os.fspath(root)
    entries: dict[str, EntryInfo] = {}
    first_path_of_inode: dict[tuple[int, int], str] = {}
    paths = ["."]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            paths.append(os.path.normpath(os.path.join(rel_dir, name)))
    for rel in sorted(paths):
        path = os.path.join(root, rel)
        st = os.lstat(path)
        kind = _KINDS[stat.S_IFMT(st.st_mode)]
        hardlink = None
        if kind != "dir" and st.st_nlink > 1:
            hardlink = first_path_of_inode.setdefault((st.st_dev, st.st_ino), rel)
        entries[rel] = EntryInfo(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=st.st_mtime_ns,
            atime_ns=None if kind in ("dir", "symlink") else st.st_atime_ns,
            size=st.st_size if kind == "file" else None,
            sha256=_content_hash(path) if kind == "file" else None,
            target=os.readlink(path) if kind == "symlink" else None,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev))
            if kind in ("char", "block")
            else None,
            xattrs=_xattrs(path),
            hardlink=hardlink,
        )
    return entries


def diff_trees(
    expected: dict[str, EntryInfo],
    actual: dict[str, EntryInfo],
    *,
    ignore_atime: bool = False,
    ignore_mtime: Sequence[str] = (),
    ignore_dir_mtimes: bool = False,
) -> list[str]:
    """Human-readable differences between two snapshots; ``[]`` when they are equal.

    ``ignore_mtime`` lists paths whose times are not under test (directories that an
    unpacker had to create without an entry get the time of the unpack); the root's
    times are never compared.
    """
    problems: list[str] = []
    for path in sorted(set(expected) | set(actual)):
        a, b = expected.get(path), actual.get(path)
        if a is None or b is None:
            problems.append(f"{path}: only in {'actual' if a is None else 'expected'}")
            continue
        skip = {"atime_ns"} if ignore_atime else set()
        if path == "." or path in ignore_mtime or (ignore_dir_mtimes and a.kind == "dir"):
            skip |= {"mtime_ns", "atime_ns"}
        for f in fields(EntryInfo):
            if f.name in skip:
                continue
            va, vb = getattr(a, f.name), getattr(b, f.name)
            if va != vb:
                problems.append(f"{path}: {f.name} expected {va!r}, got {vb!r}")
    return problems


@contextlib.contextmanager
def merged_view(layers: Sequence[Path], *, userxattr: bool = False) -> Iterator[Path]:
    """Mount ``layers`` (bottom first) as a read-only overlay; yield the mount point."""
    if len(layers) == 1:
        yield layers[0]  # one layer is its own merged view (overlayfs wants two lowers)
        return
    with tempfile.TemporaryDirectory(prefix="layerdiff-merged-") as mountpoint:
        lowerdir = ":".join(str(p) for p in reversed(layers))
        options = f"lowerdir={lowerdir}" + (",userxattr" if userxattr else "")
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, mountpoint], check=True)
        try:
            yield Path(mountpoint)
        finally:
            subprocess.run(["umount", mountpoint], check=True)
