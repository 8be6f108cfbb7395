"""The changes of an overlayfs upperdir, read from the upperdir alone.

An upperdir holds exactly what was changed on top of its lowerdirs: new and modified
entries (copied up), character devices 0/0 for deleted names, and directories marked
opaque (``trusted.overlay.opaque=y``, or ``user.overlay.opaque=y`` for ``userxattr``
mounts) that hide everything the lowerdirs had under them. Walking it alone costs what
the change costs, not what the tree costs (containerd 2.x's ``fs.DiffDirChanges``).

Each upper entry is looked up in the lowerdirs' merged view, one name at a time, with
overlayfs's rules: the nearest lowerdir holding a name decides; a directory merges with
same-named directories below it until a whiteout, a non-directory or an opaque
directory. An upper entry equal to what the lowerdirs show (overlayfs copies up a file
on a mere ``chown`` to the same owner) is no change, and the comparison is the double
walk's (``changes.same_entry``): on the same change, both walks yield the same changes,
except under an opaque directory, which this walk reports as one ``OPAQUE`` change
instead of one ``DELETE`` per name the lowerdirs had there. Whiteouts of names that no
lowerdir has are dropped.

overlayfs's private xattrs (``trusted.overlay.*``; ``user.overlay.*`` with ``userxattr``,
where ``user.overlay.overlay.X`` stands for a file's own ``user.overlay.X``) are read as
markers, never carried into the layer. Renamed directories (``redirect_dir``) and
metadata-only copy-ups (``metacopy``) keep part of an entry in a lowerdir: they are
refused, since the upperdir alone cannot give them.

A directory that lost an xattr is written anew, as by the double walk: its entries then
come from the upperdir and the lowerdirs alike, as the merged view shows them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from layerdiff.archive.changes import (
    Change,
    ChangeKind,
    Tree,
    XattrNames,
    layer_xattr,
    recreated_dir,
    same_entry,
)
from layerdiff.archive.fsroot import is_whiteout
from layerdiff.errors import UnsupportedError

_USER_OVERLAY = "user.overlay."


def overlay_xattr_names(userxattr: bool) -> XattrNames:
    """How the xattrs stored in overlay layer directories map to a layer's xattrs."""
    if not userxattr:
        return layer_xattr  # trusted.overlay.* goes with every trusted.* xattr
    escaped = _USER_OVERLAY + "overlay."

    def name(stored: str) -> str | None:
        if stored.startswith(escaped):
            return _USER_OVERLAY + stored[len(escaped) :]
        if stored.startswith(_USER_OVERLAY):
            return None
        return layer_xattr(stored)

    return name


@dataclass(slots=True)
class _Frame:
    """A directory being walked.

    ``in_upper``: the upperdir holds it; ``layers``: the lowerdirs whose same directory
    merges into it; ``full``: it is being written anew, every visible entry below it is
    an ``ADD`` (read from whichever directory shows it).
    """

    rel: str
    names: list[str]
    in_upper: bool
    layers: tuple[int, ...]
    full: bool = False
    next: int = 0


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class _LowerView:
    """Lookups in the merged view of lowerdirs (nearest first), one name at a time."""

    def __init__(self, lowers: Sequence[Tree], opaque_xattr: str) -> None:
        self.lowers = lowers
        self._opaque_xattr = opaque_xattr

    def lookup(
        self, layers: tuple[int, ...], rel: str
    ) -> tuple[int, os.stat_result, tuple[int, ...]] | None:
        """Where ``rel`` shows (layer, lstat) and which layers merge below it, or None.

        ``layers`` are those holding ``rel``'s parent as a merged directory.
        """
        found: tuple[int, os.stat_result] | None = None
        merged: list[int] = []
        for layer in layers:
            st = self.lowers[layer].lstat_or_none(rel)
            if st is None:
                continue
            if is_whiteout(st):
                break
            if found is None:
                found = (layer, st)
            if not stat.S_ISDIR(st.st_mode) or not stat.S_ISDIR(found[1].st_mode):
                break
            merged.append(layer)
            if self.lowers[layer].getxattr(rel, self._opaque_xattr) == b"y":
                break
        if found is None:
            return None
        return found[0], found[1], tuple(merged)


class _Walk:
    """One walk of an upperdir over its lowerdirs."""

    def __init__(self, lowers: Sequence[Tree], upper: Tree, userxattr: bool) -> None:
        private = _USER_OVERLAY if userxattr else "trusted.overlay."
        self.opaque_xattr = private + "opaque"
        self.refused = {private + "redirect": "redirect_dir", private + "metacopy": "metacopy"}
        self.lowers = lowers
        self.upper = upper
        self.view = _LowerView(lowers, self.opaque_xattr)

    def changes(self) -> Iterator[Change]:
        stack = [_Frame("", self.upper.names(""), True, tuple(range(len(self.lowers))))]
        while stack:
            frame = stack[-1]
            if frame.next == len(frame.names):
                stack.pop()
                continue
            name = frame.names[frame.next]
            frame.next += 1
            rel = _join(frame.rel, name)
            if frame.full:
                yield from self._full_entry(frame, rel, stack)
            else:
                yield from self._diff_entry(frame, rel, stack)

    def _upper_xattr_names(self, rel: str, st: os.stat_result) -> list[str] | None:
        """The stored xattr names of upper entry ``rel``; None for whiteouts and sockets."""
        # A socket cannot be put in a tar: it counts as absent, as in the double walk.
        if is_whiteout(st) or stat.S_ISSOCK(st.st_mode):
            return None
        stored = self.upper.xattr_names(rel)
        for xattr, feature in self.refused.items():
            if xattr in stored:
                raise UnsupportedError(
                    f"{rel!r} in the upperdir uses overlayfs {feature}: part of it is in a "
                    "lowerdir; diff the mounted view instead"
                )
        return stored

    def _is_opaque(self, rel: str, stored: list[str]) -> bool:
        return self.opaque_xattr in stored and self.upper.getxattr(rel, self.opaque_xattr) == b"y"

    def _diff_entry(self, frame: _Frame, rel: str, stack: list[_Frame]) -> Iterator[Change]:
        base = self.view.lookup(frame.layers, rel) if frame.layers else None
        ust = self.upper.lstat(rel)
        stored = self._upper_xattr_names(rel, ust)
        if stored is None:
            if base is not None:
                yield Change(ChangeKind.DELETE, rel)
            return
        xattrs = self.upper.xattrs(rel, stored)
        is_dir = stat.S_ISDIR(ust.st_mode)
        if base is None:
            yield Change(ChangeKind.ADD, rel, ust, xattrs)
            if is_dir:
                stack.append(_Frame(rel, self.upper.names(rel), True, ()))
            return
        layer, bst, merged = base
        lower = self.lowers[layer]
        if is_dir and stat.S_ISDIR(bst.st_mode):
            if self._is_opaque(rel, stored):
                yield Change(ChangeKind.MODIFY, rel, ust, xattrs)
                yield Change(ChangeKind.OPAQUE, rel)
                stack.append(_Frame(rel, self.upper.names(rel), True, ()))
                return
            if lower.xattrs(rel).keys() - xattrs.keys():
                yield from recreated_dir(rel, ust, xattrs)
                stack.append(self._full_frame(rel, True, merged))
                return
        if not same_entry(rel, lower, bst, self.upper, ust, upper_xattrs=xattrs):
            yield Change(ChangeKind.MODIFY, rel, ust, xattrs)
        elif not is_dir and (ust.st_nlink > 1 or bst.st_nlink > 1):
            yield Change(ChangeKind.UNMODIFIED, rel, ust, xattrs, (bst.st_dev, bst.st_ino))
        if is_dir:
            stack.append(_Frame(rel, self.upper.names(rel), True, merged))

    def _full_frame(self, rel: str, in_upper: bool, layers: tuple[int, ...]) -> _Frame:
        names = set(self.upper.names(rel)) if in_upper else set()
        for layer in layers:
            names.update(self.lowers[layer].names(rel))
        return _Frame(rel, sorted(names, key=os.fsencode), in_upper, layers, full=True)

    def _full_entry(self, frame: _Frame, rel: str, stack: list[_Frame]) -> Iterator[Change]:
        ust = self.upper.lstat_or_none(rel) if frame.in_upper else None
        base = self.view.lookup(frame.layers, rel) if frame.layers else None
        if ust is not None:
            stored = self._upper_xattr_names(rel, ust)
            if stored is None:
                return  # whited out (or a socket)
            yield Change(ChangeKind.ADD, rel, ust, self.upper.xattrs(rel, stored))
            if stat.S_ISDIR(ust.st_mode):
                merges = base is not None and stat.S_ISDIR(base[1].st_mode)
                layers = base[2] if base is not None and merges else ()
                if self._is_opaque(rel, stored):
                    layers = ()
                stack.append(self._full_frame(rel, True, layers))
            return
        if base is None:
            return
        layer, bst, merged = base
        if stat.S_ISSOCK(bst.st_mode):
            return
        lower = self.lowers[layer]
        yield Change(ChangeKind.ADD, rel, bst, lower.xattrs(rel), tree=lower)
        if stat.S_ISDIR(bst.st_mode):
            stack.append(self._full_frame(rel, False, merged))


def overlay_walk(
    lowers: Sequence[Tree], upper: Tree, *, userxattr: bool = False
) -> Iterator[Change]:
    """The changes an upperdir makes over its lowerdirs (nearest first), in layer order.

    ``lowers`` and ``upper`` should read xattrs through ``overlay_xattr_names(userxattr)``.
    """
    return _Walk(lowers, upper, userxattr).changes()
