"""What changed between two directory trees, in the order a layer must list it.

This is continuity's ``fs.Changes`` (the double walk behind containerd's walking differ):
both trees are walked together in lexical order — names compared byte by byte, a
directory's descendants right after it, which is the order of continuity's
``directoryCompare`` that ranks ``/`` below every other byte — and each path yields at
most one change:

- ``DELETE`` for a path only the lower tree has. A deleted directory is one change: its
  descendants are not visited (continuity walks them and drops them).
- ``ADD`` for a path only the upper tree has; ``MODIFY`` for one both have that differs.
  A directory replaced by a non-directory hides the lower descendants, as a delete would.
- ``UNMODIFIED`` for an equal non-directory that has hardlinks (in either tree): the
  layer writer needs it to keep link groups whole, as containerd's ``ChangeWriter`` does.
- ``DELETE``, ``ADD``, ``OPAQUE`` and an ``ADD`` for each descendant, for a directory
  that lost an xattr: appliers merge a directory entry into an existing directory by
  setting the entry's xattrs, never by removing others, so the directory must be made
  anew (the opaque marker keeps overlay-form appliers from showing the old children).

Two entries are equal when their type, permission bits, owner, device number and layer
xattrs are equal and, for non-directories, their size, modification time (to the
nanosecond) and symlink target. File contents are compared only when the times cannot
decide: both have a whole-second mtime (as after a tar without sub-second times), as
continuity does. Unlike continuity, directory times and every xattr count (see
docs/diff.md), so that applying the layer to the lower tree gives the upper tree back.

The trees are only read: nothing follows a symlink, and files and directories are opened
with ``O_NOATIME`` where the kernel allows it.
"""

from __future__ import annotations

import enum
import errno
import os
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from stat import S_ISDIR, S_ISLNK, S_ISREG, S_ISSOCK

from layerdiff.errors import TreeReadError

_CHUNK = 1 << 20
_NS = 1_000_000_000
_O_NOATIME = getattr(os, "O_NOATIME", 0)
_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_XATTRS: Mapping[str, bytes] = {}

#: Maps an xattr name found on disk to the name a layer carries, or None to leave it out.
XattrNames = Callable[[str], "str | None"]


def layer_xattr(name: str) -> str | None:
    """Every xattr but ``trusted.*``, which appliers (containerd's, ours) refuse to set."""
    return None if name.startswith("trusted.") else name


class ChangeKind(enum.Enum):
    """What happened to one path between the lower and the upper tree."""

    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"
    #: Equal in both trees, but hardlinked: the writer may still have to link it.
    UNMODIFIED = "unmodified"
    #: An overlay opaque directory: everything the lower tree had under it is gone.
    OPAQUE = "opaque"


@dataclass(frozen=True, slots=True)
class Change:
    """One change: its kind, its relative path, and the upper entry's lstat and xattrs."""

    kind: ChangeKind
    path: str
    stat: os.stat_result | None = None
    xattrs: Mapping[str, bytes] = field(default_factory=lambda: _NO_XATTRS)
    #: The lower entry's (st_dev, st_ino), for UNMODIFIED hardlink bookkeeping.
    lower_inode: tuple[int, int] | None = None
    #: Where the entry is read from, when not from the upper tree (an overlay lowerdir).
    tree: Tree | None = None


def _source_error(err: OSError, path: str) -> TreeReadError:
    return TreeReadError(f"cannot read {path!r}: {err.strerror or err}")


class Tree:
    """Read access to one directory tree, by paths relative to its root ("" = the root)."""

    def __init__(self, root: str | os.PathLike[str], xattr_name: XattrNames = layer_xattr) -> None:
        self.root = os.fspath(root)
        # Paths are joined by concatenation: os.path.join costs more than the lstat.
        self._prefix = os.path.join(self.root, "")
        self._xattr_name = xattr_name
        self._noatime = _O_NOATIME

    def path(self, rel: str) -> str:
        """The host path of ``rel``."""
        return self._prefix + rel if rel else self.root

    def _open(self, rel: str, flags: int) -> int:
        path = self.path(rel)
        try:
            try:
                return os.open(path, flags | self._noatime)
            except PermissionError:
                if not self._noatime:
                    raise
                # O_NOATIME needs ownership or CAP_FOWNER; without it, read anyway.
                self._noatime = 0
                return os.open(path, flags)
        except OSError as err:
            raise _source_error(err, path) from None

    def lstat(self, rel: str) -> os.stat_result:
        """``lstat`` of ``rel``."""
        path = self._prefix + rel if rel else self.root
        try:
            return os.lstat(path)
        except OSError as err:
            raise _source_error(err, path) from None

    def lstat_or_none(self, rel: str) -> os.stat_result | None:
        """``lstat`` of ``rel``, or None when nothing is there."""
        try:
            return os.lstat(self.path(rel))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise _source_error(err, self.path(rel)) from None

    def names(self, rel: str) -> list[str]:
        """The names in directory ``rel``, in byte order (Go's sort of file names)."""
        fd = self._open(rel, _O_READ | os.O_DIRECTORY)
        try:
            names = os.listdir(fd)
        except OSError as err:
            raise _source_error(err, self.path(rel)) from None
        finally:
            os.close(fd)
        # Code point order is UTF-8 byte order, except for the lone surrogates that
        # stand for undecodable bytes: only those need the (slower) byte keys.
        if "".join(names).isascii():
            names.sort()
        else:
            names.sort(key=os.fsencode)
        return names

    def xattr_names(self, rel: str) -> list[str]:
        """The names of every xattr of ``rel`` as stored on disk."""
        path = self._prefix + rel if rel else self.root
        try:
            return os.listxattr(path, follow_symlinks=False)
        except OSError as err:
            if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return []
            raise _source_error(err, path) from None

    def getxattr(self, rel: str, name: str) -> bytes | None:
        """One xattr of ``rel`` as stored on disk, or None."""
        try:
            return os.getxattr(self.path(rel), name, follow_symlinks=False)
        except OSError as err:
            if err.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                return None
            raise _source_error(err, self.path(rel)) from None

    def xattrs(self, rel: str, names: list[str] | None = None) -> Mapping[str, bytes]:
        """The xattrs of ``rel`` that a layer carries, under their layer names."""
        if names is None:
            names = self.xattr_names(rel)
        if not names:
            return _NO_XATTRS
        found: dict[str, bytes] = {}
        for name in sorted(names):
            layer_name = self._xattr_name(name)
            if layer_name is not None:
                value = self.getxattr(rel, name)
                if value is not None:  # removed since it was listed
                    found[layer_name] = value
        return found

    def readlink(self, rel: str) -> str:
        """The target of symlink ``rel``."""
        try:
            return os.readlink(self.path(rel))
        except OSError as err:
            raise _source_error(err, self.path(rel)) from None

    def read(self, rel: str) -> Generator[bytes, None, None]:
        """The content of regular file ``rel``, in pieces of at most 1 MiB."""
        fd = self._open(rel, _O_READ)
        try:
            while True:
                try:
                    chunk = os.read(fd, _CHUNK)
                except OSError as err:
                    raise _source_error(err, self.path(rel)) from None
                if not chunk:
                    return
                yield chunk
        finally:
            os.close(fd)

    def same_content(self, rel: str, other: Tree, size: int = 0) -> bool:
        """Whether regular file ``rel`` holds the same bytes here and in ``other``.

        ``size`` is what lstat said on both sides: asking for one byte more than is left
        ends both files without the extra read that returns nothing (a short read where
        nothing is left is the end on a regular file). Pieces are compared as read: a
        short read on one side only (never seen on local file systems) makes equal files
        look different, which costs an entry, not a bug.
        """
        mine = self._open(rel, _O_READ)
        try:
            theirs = other._open(rel, _O_READ)
            try:
                left = size
                while True:
                    want = min(left + 1, _CHUNK) if left > 0 else _CHUNK
                    try:
                        a = os.read(mine, want)
                    except OSError as err:
                        raise _source_error(err, self.path(rel)) from None
                    try:
                        b = os.read(theirs, want)
                    except OSError as err:
                        raise _source_error(err, other.path(rel)) from None
                    if a != b:
                        return False
                    if not a:
                        return True
                    left -= len(a)
                    if len(a) < want and left <= 0:
                        return True
            finally:
                os.close(theirs)
        finally:
            os.close(mine)


def same_entry(
    rel: str,
    lower: Tree,
    lst: os.stat_result,
    upper: Tree,
    ust: os.stat_result,
    *,
    upper_xattrs: Mapping[str, bytes],
    lower_xattrs: Mapping[str, bytes] | None = None,
) -> bool:
    """Whether ``rel`` in ``lower`` and in ``upper`` are equal for a layer (see module doc).

    ``lower_xattrs``: the lower entry's xattrs, when the caller has read them already.
    """
    if lst.st_ino == ust.st_ino and lst.st_dev == ust.st_dev:
        return True  # one inode seen twice (the same tree, or a bind of it)
    mode = ust.st_mode
    if (
        lst.st_mode != mode
        or lst.st_mtime_ns != ust.st_mtime_ns
        or lst.st_uid != ust.st_uid
        or lst.st_gid != ust.st_gid
        or lst.st_rdev != ust.st_rdev
    ):
        return False
    if not S_ISDIR(mode) and lst.st_size != ust.st_size:
        return False
    if lower_xattrs is None:
        lower_xattrs = lower.xattrs(rel)
    if lower_xattrs != upper_xattrs:
        return False
    if S_ISREG(mode):
        # A whole-second time may be a truncated one: only the bytes can tell.
        if ust.st_size and ust.st_mtime_ns % _NS == 0:
            return lower.same_content(rel, upper, ust.st_size)
        return True
    if S_ISLNK(mode):
        # continuity compares targets only for whole-second times; a readlink is cheap
        # enough to do always, and a same-size retarget keeps its time under `ln -sfn`.
        return lower.readlink(rel) == upper.readlink(rel)
    return True


@dataclass(slots=True)
class _Frame:
    """A directory being walked: its merged names and which tree has which.

    ``upper_names`` and ``lower_names`` are None when both trees list the same names,
    as almost every directory of a small change does.
    """

    prefix: str
    names: list[str]
    upper_names: frozenset[str] | None
    lower_names: frozenset[str] | None


def _frame(rel: str, upper_names: list[str], lower_names: list[str]) -> _Frame:
    prefix = rel + "/" if rel else ""
    if upper_names == lower_names:
        return _Frame(prefix, upper_names, None, None)
    merged = upper_names if not lower_names else sorted(
        set(upper_names) | set(lower_names), key=os.fsencode
    )
    return _Frame(prefix, merged, frozenset(upper_names), frozenset(lower_names))


def double_walk(lower: Tree | None, upper: Tree) -> Iterator[Change]:
    """The changes that turn ``lower`` (None: an empty tree) into ``upper``, in layer order.

    The hot loop of ``layerdiff diff``: per path one lstat and one listxattr in each tree,
    and the reads ``same_entry`` needs; nothing else is looked up or allocated.
    """
    root = _frame("", upper.names(""), lower.names("") if lower is not None else [])
    # A stack of (frame, iterator over its names): the iterator is the walk's position.
    stack = [(root, iter(root.names))]
    while stack:
        frame, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        rel = frame.prefix + name
        upper_names, lower_names = frame.upper_names, frame.lower_names
        if upper_names is None or name in upper_names:
            ust = upper.lstat(rel)
            if S_ISSOCK(ust.st_mode):
                # tar has no sockets: an upper socket is left out, like containerd.
                if lower_names is None or name in lower_names:
                    yield Change(ChangeKind.DELETE, rel)
                continue
        else:
            yield Change(ChangeKind.DELETE, rel)
            continue
        upper_is_dir = S_ISDIR(ust.st_mode)
        xattrs = upper.xattrs(rel)
        if lower is None or (lower_names is not None and name not in lower_names):
            yield Change(ChangeKind.ADD, rel, ust, xattrs)
            if upper_is_dir:
                child = _frame(rel, upper.names(rel), [])
                stack.append((child, iter(child.names)))
            continue
        lst = lower.lstat(rel)
        lower_is_dir = S_ISDIR(lst.st_mode)
        lower_xattrs = None
        if upper_is_dir and lower_is_dir:
            lower_xattrs = lower.xattrs(rel)
            if lower_xattrs.keys() - xattrs.keys():
                yield from recreated_dir(rel, ust, xattrs)
                child = _frame(rel, upper.names(rel), [])
                stack.append((child, iter(child.names)))
                continue
        if not same_entry(
            rel, lower, lst, upper, ust, upper_xattrs=xattrs, lower_xattrs=lower_xattrs
        ):
            yield Change(ChangeKind.MODIFY, rel, ust, xattrs)
        elif not upper_is_dir and (ust.st_nlink > 1 or lst.st_nlink > 1):
            yield Change(ChangeKind.UNMODIFIED, rel, ust, xattrs, (lst.st_dev, lst.st_ino))
        if upper_is_dir:
            child = _frame(rel, upper.names(rel), lower.names(rel) if lower_is_dir else [])
            stack.append((child, iter(child.names)))


def recreated_dir(
    rel: str, st: os.stat_result, xattrs: Mapping[str, bytes]
) -> Iterator[Change]:
    """The changes that replace directory ``rel`` by a new one (its entries to follow)."""
    yield Change(ChangeKind.DELETE, rel)
    yield Change(ChangeKind.ADD, rel, st, xattrs)
    yield Change(ChangeKind.OPAQUE, rel)
