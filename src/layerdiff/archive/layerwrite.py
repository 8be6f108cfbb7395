"""Turning changes into layer entries: containerd's ``archive.ChangeWriter``.

For each change, in the order given:

- a deleted path becomes a whiteout ``dir/.wh.NAME`` and an opaque directory
  ``dir/.wh..wh..opq``: empty regular files, mode 0, owner 0:0, time 0 (the epoch, as
  containerd 2.x writes them; 1.7 used the wall clock);
- an added or modified path becomes an entry with the upper entry's type, permission
  bits (setuid, setgid and sticky included), numeric owner, size, modification time
  (nanoseconds; later times clamped to ``SOURCE_DATE_EPOCH`` when given), link target,
  device numbers and xattrs; no access or change time, no user or group names;
- before any entry, the directories above it that are not in the layer yet, with the
  upper tree's metadata (containerd's ``includeParents``): a layer never relies on its
  applier inventing a parent, and a directory whose children change gets its own time
  back after the applier has touched it.

Hardlinks: the first entry written for an inode carries its data, later ones are link
entries naming it. An unchanged path that shares its inode with a written one is written
as a link too (``ChangeKind.UNMODIFIED``, as containerd does), or the applied tree would
keep the old inode there. What containerd misses — two unchanged paths linked in one
tree and not in the other (``cp -p`` over a link, ``ln -f`` over an equal file) — is
settled at the end: such a group is written again, data first, after the walk.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable

from layerdiff.archive.changes import Change, ChangeKind, Tree
from layerdiff.archive.tarstream import BLOCKDEV, CHAR, DIR, FIFO, LINK, REG, SYMLINK
from layerdiff.archive.tarwrite import TarEntry, TarWriter
from layerdiff.archive.whiteout import OPAQUE_MARKER, WHITEOUT_PREFIX
from layerdiff.errors import UnsupportedError

_TYPEFLAGS = {
    stat.S_IFREG: REG,
    stat.S_IFDIR: DIR,
    stat.S_IFLNK: SYMLINK,
    stat.S_IFCHR: CHAR,
    stat.S_IFBLK: BLOCKDEV,
    stat.S_IFIFO: FIFO,
}
_NS = 1_000_000_000

Inode = tuple[int, int]


def _dirname(name: str) -> str:
    return name.rstrip("/").rpartition("/")[0]


class LayerWriter:
    """Writes the entries for a stream of changes to ``tar``, reading ``upper``."""

    def __init__(
        self, upper: Tree, tar: TarWriter, *, source_date_epoch: int | None = None
    ) -> None:
        self._upper = upper
        self._tar = tar
        self._mtime_bound = None if source_date_epoch is None else source_date_epoch * _NS
        self._added_dirs: set[str] = set()
        #: inode -> name of the entry that carries its data
        self._inode_src: dict[Inode, str] = {}
        #: inode -> unchanged paths of it that no written entry has claimed yet
        self._pending: dict[Inode, list[Change]] = {}

    def write_all(self, changes: Iterable[Change]) -> None:
        """Write every change, settle the hardlink groups, end the archive."""
        for change in changes:
            self.handle(change)
        self._settle_links()
        self._tar.close()

    def handle(self, change: Change) -> None:
        """Write the entries for one change."""
        if change.kind is ChangeKind.DELETE:
            parent, _, base = change.path.rpartition("/")
            name = WHITEOUT_PREFIX + base
            self._whiteout(f"{parent}/{name}" if parent else name)
            return
        if change.kind is ChangeKind.OPAQUE:
            self._whiteout(f"{change.path}/{OPAQUE_MARKER}")
            return
        st = change.stat
        assert st is not None, "only deletions come without an lstat"
        inode = (st.st_dev, st.st_ino)
        linked = not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1
        source = self._inode_src.get(inode) if linked else None
        if source is not None:
            self._add_link(self._entry(change), source)
        elif change.kind is ChangeKind.UNMODIFIED:
            # Wait for a written entry of the same inode, or for the end (_settle_links).
            self._pending.setdefault(inode, []).append(change)
        else:
            entry = self._entry(change)
            self._add(entry, change)
            if linked:
                self._inode_src[inode] = entry.name
                for waiting in self._pending.pop(inode, []):
                    self._add_link(self._entry(waiting), entry.name)

    def _entry(self, change: Change) -> TarEntry:
        st = change.stat
        assert st is not None
        kind = stat.S_IFMT(st.st_mode)
        typeflag = _TYPEFLAGS.get(kind)
        if typeflag is None:
            raise UnsupportedError(f"{change.path!r}: tar has no file type {kind:o}")
        mtime = st.st_mtime_ns
        if self._mtime_bound is not None and mtime > self._mtime_bound:
            mtime = self._mtime_bound
        is_device = typeflag in (CHAR, BLOCKDEV)
        return TarEntry(
            name=change.path + "/" if typeflag == DIR else change.path,
            typeflag=typeflag,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            size=st.st_size if typeflag == REG else 0,
            mtime_ns=mtime,
            linkname=(change.tree or self._upper).readlink(change.path) if typeflag == SYMLINK
            else "",
            devmajor=os.major(st.st_rdev) if is_device else 0,
            devminor=os.minor(st.st_rdev) if is_device else 0,
            xattrs=change.xattrs,
        )

    def _add(self, entry: TarEntry, change: Change) -> None:
        self._include_parents(entry.name)
        if entry.typeflag == DIR:
            self._added_dirs.add(change.path)
        if entry.typeflag != REG or not entry.size:
            self._tar.add(entry, ())
            return
        tree = change.tree or self._upper
        # Closed here, not when the error's traceback lets go of the generator: its open
        # file would keep the temporary mount busy while the error unmounts it.
        with contextlib.closing(tree.read(change.path)) as data:
            self._tar.add(entry, data)

    def _add_link(self, entry: TarEntry, source: str) -> None:
        self._include_parents(entry.name)
        entry.typeflag, entry.linkname, entry.size = LINK, source, 0
        self._tar.add(entry)

    def _whiteout(self, name: str) -> None:
        self._include_parents(name)
        self._tar.add(TarEntry(name, REG))

    def _include_parents(self, name: str) -> None:
        missing: list[str] = []
        parent = _dirname(name)
        while parent and parent not in self._added_dirs:
            self._added_dirs.add(parent)
            missing.append(parent)
            parent = _dirname(parent)
        for rel in reversed(missing):
            st = self._upper.lstat(rel)
            entry = self._entry(Change(ChangeKind.MODIFY, rel, st, self._upper.xattrs(rel)))
            self._tar.add(entry)

    def _settle_links(self) -> None:
        """Write the unchanged link groups whose shape differs between the trees."""
        groups = sorted(self._pending.values(), key=lambda g: os.fsencode(g[0].path))
        lower_groups: dict[Inode | None, set[str]] = {}
        for group in groups:
            for change in group:
                lower_groups.setdefault(change.lower_inode, set()).add(change.path)
        for group in groups:
            paths = {change.path for change in group}
            lower_inodes = {change.lower_inode for change in group}
            if len(lower_inodes) == 1 and lower_groups[lower_inodes.pop()] == paths:
                continue  # linked alike in both trees: the lower inode serves as it is
            for change in group:
                lower_groups[change.lower_inode].discard(change.path)
            first, *rest = group
            entry = self._entry(first)
            self._add(entry, first)
            for change in rest:
                self._add_link(self._entry(change), entry.name)
