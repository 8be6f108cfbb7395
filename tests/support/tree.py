"""Snapshots of directory trees, their comparison, and merged overlay views.

A snapshot maps each path (relative, the root as ".") to everything an unpacker decides
about it: type, mode bits, owner, times, content, link target, device numbers, xattrs,
and which paths share an inode.

Reading a tree must not change it, or a second snapshot of the same tree would differ
from the first. Listing a directory and reading a symlink update their access times
(relatime updates whenever atime <= mtime or ctime, which is what unpackers leave
behind), and readlink(2) has no O_NOATIME. So, as root, the tree is read through a
private read-only ``noatime`` bind mount (not recursive: mounts inside the tree are not
followed), where the kernel never updates access times; elsewhere files and directories
are opened with O_NOATIME (when we own them) and every entry is lstat'ed before it is
read, so only symlink access times are disturbed, and only for the next reader.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

# <linux/mount.h>
MS_RDONLY = 0x1
MS_NOATIME = 0x400
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MNT_DETACH = 0x2

_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


@dataclass(frozen=True)
class EntryInfo:
    """What an unpacker decided about one path."""

    kind: str  # file, dir, symlink, char, block, fifo, socket
    mode: int  # permission and special bits: st_mode & 0o7777
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int
    size: int | None  # None for directories: their size depends on the file system
    sha256: str | None  # of a regular file's content
    target: str | None  # of a symlink
    rdev: tuple[int, int] | None  # (major, minor) of a device
    xattrs: Mapping[str, bytes] = field(hash=False)
    # Lexically first path of the tree sharing this inode, when the tree has two or more.
    hardlink: str | None = None


Tree = dict[str, EntryInfo]
FIELDS = frozenset(f.name for f in fields(EntryInfo))


# ----------------------------------------------------------------------------- mounts

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str, target: Path, fstype: str | None, flags: int, data: str = "") -> None:
    """mount(2), raising OSError."""
    if _libc.mount(
        os.fsencode(source),
        os.fsencode(target),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    ):
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} {source} on {target} ({data}): "
                           f"{os.strerror(err)}")


def unmount(target: Path | str, flags: int = 0) -> None:
    """umount2(2), raising OSError."""
    if _libc.umount2(os.fsencode(target), flags):
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}", str(target))


@contextlib.contextmanager
def _quiet_view(root: Path) -> Iterator[Path]:
    """Yield a view of root whose reading changes no access time (see module doc)."""
    if os.geteuid() != 0:
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="layerdiff-snap-") as tmp:
        view = Path(tmp)
        try:
            mount(str(root), view, None, MS_BIND)
        except PermissionError:  # root without CAP_SYS_ADMIN, e.g. in a container
            yield root
            return
        try:
            # A bind mount takes its flags only from a remount.
            mount("none", view, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOATIME)
            yield view
        finally:
            unmount(view, MNT_DETACH)


# ---------------------------------------------------------------------------- snapshot

def _open_noatime(path: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_NOATIME)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        return os.open(path, flags | os.O_NOFOLLOW)


def _content_sha256(path: str) -> str:
    digest = hashlib.sha256()
    fd = _open_noatime(path, os.O_RDONLY)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


def _list_dir(path: str) -> list[str]:
    fd = _open_noatime(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def snapshot_tree(root: str | os.PathLike[str]) -> Tree:
    """Record everything observable about the tree under root, root included as "."."""
    with _quiet_view(Path(root)) as view:
        return _snapshot(os.fspath(view))


def _snapshot(top: str) -> Tree:
    stats: dict[str, os.stat_result] = {".": os.lstat(top)}
    entries: Tree = {}
    # Each entry is lstat'ed right after its parent is listed, before anything reads
    # it, so the times recorded are the ones the unpacker left.
    pending = ["."]
    while pending:
        rel = pending.pop()
        path = top if rel == "." else os.path.join(top, rel)
        st = stats[rel]
        kind = _KINDS[stat.S_IFMT(st.st_mode)]
        if kind == "dir":
            for name in _list_dir(path):
                child = name if rel == "." else f"{rel}/{name}"
                stats[child] = os.lstat(os.path.join(path, name))
                pending.append(child)
        entries[rel] = EntryInfo(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=st.st_mtime_ns,
            atime_ns=st.st_atime_ns,
            size=None if kind == "dir" else st.st_size,
            sha256=_content_sha256(path) if kind == "file" else None,
            target=os.readlink(path) if kind == "symlink" else None,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block")
            else None,
            xattrs=_xattrs(path),
        )

    # Hardlink groups, counted within the tree: a link from outside does not make one.
    inodes: dict[tuple[int, int], list[str]] = {}
    for rel, st in stats.items():
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    group_of = {p: min(group) for group in inodes.values() if len(group) > 1 for p in group}
    return {
        rel: dataclasses.replace(entries[rel], hardlink=group_of[rel])
        if rel in group_of else entries[rel]
        for rel in sorted(entries)
    }


# ---------------------------------------------------------------------------- compare

def _fmt_time(ns: int) -> str:
    seconds, frac = divmod(ns, 10**9)
    try:
        when = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        when = "?"
    return f"{ns} ({when}.{frac:09d}Z)"


_FORMAT: dict[str, Callable[[object], str]] = {
    "mode": lambda v: oct(v) if isinstance(v, int) else repr(v),
    "mtime_ns": lambda v: _fmt_time(v) if isinstance(v, int) else repr(v),
    "atime_ns": lambda v: _fmt_time(v) if isinstance(v, int) else repr(v),
}


def diff_trees(
    expected: Tree,
    actual: Tree,
    ignore: Collection[str] = frozenset(),
    *,
    ignore_atime: bool = False,
    ignore_atime_kinds: Collection[str] = frozenset({"dir", "symlink"}),
    ignore_mtime: Collection[str] = (),
    ignore_dir_mtimes: bool = False,
) -> list[str]:
    """List the differences between two snapshots, one readable line each; [] if equal.

    ignore: EntryInfo field names never compared (e.g. {"uid", "gid"}).
    ignore_atime: no access time is compared.
    ignore_atime_kinds: kinds of entries whose access times are not compared; by
        default directories and symlinks, which unpackers read, each at its own time:
        containerd's snapshotters walk every snapshot on Commit to measure its disk
        usage (listing every directory), and resolving a path through a symlink
        reads the link. Pass () to compare them all.
    ignore_mtime: paths whose times are not compared (e.g. directories an unpacker had
        to create without an entry: they get the time of the unpack).
    ignore_dir_mtimes: no directory's times are compared.
    The root's times are never compared: the root is made by whoever made the target.
    Directory sizes are not recorded at all.
    """
    unknown = set(ignore) - FIELDS
    if unknown:
        raise ValueError(f"unknown EntryInfo fields: {sorted(unknown)}")
    skip_always = set(ignore) | ({"atime_ns"} if ignore_atime else set())
    times = {"mtime_ns", "atime_ns"}
    problems: list[str] = []
    for path in sorted(expected.keys() | actual.keys()):
        a, b = expected.get(path), actual.get(path)
        if b is None:
            assert a is not None
            problems.append(f"{path}: missing (expected a {a.kind})")
            continue
        if a is None:
            problems.append(f"{path}: unexpected {b.kind}")
            continue
        skip = set(skip_always)
        if path == "." or path in ignore_mtime or (ignore_dir_mtimes and a.kind == "dir"):
            skip |= times
        if a.kind in ignore_atime_kinds:
            skip.add("atime_ns")
        for name in sorted(FIELDS - skip):
            va, vb = getattr(a, name), getattr(b, name)
            if va == vb:
                continue
            if name == "xattrs":
                for key in sorted(va.keys() | vb.keys()):
                    if va.get(key) != vb.get(key):
                        problems.append(
                            f"{path}: xattr {key} expected {va.get(key)!r}, got {vb.get(key)!r}"
                        )
                continue
            fmt = _FORMAT.get(name, repr)
            problems.append(f"{path}: {name} expected {fmt(va)}, got {fmt(vb)}")
    return problems


# ------------------------------------------------------------------------ merged view

@contextlib.contextmanager
def merged_view(upperdirs: Sequence[Path], *, userxattr: bool = False) -> Iterator[Path]:
    """Mount layer directories (bottom first) as a read-only overlay; yield its root.

    What a container would see: whiteouts and opaque markers are interpreted (so they
    vanish), lower entries show through. ``userxattr`` reads user.overlay.* markers.
    """
    if not upperdirs:
        raise ValueError("merged_view needs at least one layer")
    with tempfile.TemporaryDirectory(prefix="layerdiff-merged-") as tmp:
        # A lowerdir-only overlay needs two layers; an empty one below changes nothing
        # and keeps a single layer's markers interpreted rather than shown.
        empty = Path(tmp, "empty")
        empty.mkdir()
        layers = [str(Path(d).resolve()) for d in reversed(upperdirs)]
        if len(layers) == 1:
            layers.append(str(empty))
        for layer in layers:
            if ":" in layer or "," in layer or "\\" in layer:
                raise ValueError(f"overlay lowerdir cannot contain ':', ',' or '\\': {layer}")
        options = "lowerdir=" + ":".join(layers) + (",userxattr" if userxattr else "")
        if len(options) >= os.sysconf("SC_PAGE_SIZE"):
            raise ValueError(f"overlay options longer than a page: {len(options)} bytes")
        target = Path(tmp, "merged")
        target.mkdir()
        mount("overlay", target, "overlay", MS_RDONLY, options)
        try:
            yield target
        finally:
            try:
                unmount(target)
            except OSError as e:  # still busy (an open fd in the test): don't leak it
                if e.errno != errno.EBUSY:
                    raise
                unmount(target, MNT_DETACH)
