"""The merged view of an overlayfs upperdir over its lowerdirs, read without mounting.

When a layer is applied straight into an upperdir, names must be resolved the way the
mounted overlay will show them: a symlink that a lower layer created (``bin ->
usr/bin``) must be followed, a whiteout hides what is below it, and an opaque directory
hides the lower directories of the same name. containerd resolves names in the upperdir
alone, which is how its overlay form comes to differ from its own naive result.

Lookups follow overlayfs's rules for one path, component by component: the topmost
layer holding a name decides its type; a directory merges with same-named directories
below it until a whiteout, a non-directory or an opaque directory ends the stack.
Lowerdirs do not change during an apply, so their answers are cached.
"""

from __future__ import annotations

import errno
import os
import stat

from layerdiff.archive.fsroot import FsRoot, in_resolved_parent, is_whiteout

#: Layer index of the upperdir in lookup results; lowerdirs are 0, 1, ... nearest first.
UPPER = -1


class OverlayView:
    """Answers lookups in the merged view of ``upper`` over ``lowers`` (nearest first)."""

    def __init__(self, upper: FsRoot, lowers: list[str], opaque_xattr: str) -> None:
        self.upper = upper
        self.lowers = lowers
        self.opaque_xattr = opaque_xattr
        self._lower_stats: dict[tuple[int, str], os.stat_result | None] = {}
        self._lower_opaque: dict[tuple[int, str], bool] = {}

    def _stat(self, layer: int, rel: str) -> os.stat_result | None:
        if layer == UPPER:
            return self.upper.lstat(rel)
        key = (layer, rel)
        if key not in self._lower_stats:
            try:
                st: os.stat_result | None = os.lstat(os.path.join(self.lowers[layer], rel))
            except (FileNotFoundError, NotADirectoryError):
                st = None
            self._lower_stats[key] = st
        return self._lower_stats[key]

    def _opaque(self, layer: int, rel: str) -> bool:
        if layer == UPPER:
            return self.upper.getxattr(rel, self.opaque_xattr) == b"y"
        key = (layer, rel)
        if key not in self._lower_opaque:
            path = os.path.join(self.lowers[layer], rel)
            try:
                value = os.getxattr(path, self.opaque_xattr, follow_symlinks=False)
            except OSError:
                value = b""
            self._lower_opaque[key] = value == b"y"
        return self._lower_opaque[key]

    def lookup(self, rel: str, *, lowers_only: bool = False) -> tuple[int, os.stat_result] | None:
        """The layer and ``lstat`` of ``rel`` in the merged view; ``None`` if absent.

        Raises ``NotADirectoryError`` when a parent of ``rel`` is not a directory, as an
        ``lstat`` through a plain tree would, and ``OSError(ELOOP)`` when it is a symlink.
        ``lowers_only`` ignores the upperdir.
        """
        layers = list(range(len(self.lowers)))
        if not lowers_only:
            layers.insert(0, UPPER)
        parts = rel.split("/") if rel else []
        prefix = ""
        for depth, part in enumerate(parts):
            prefix = f"{prefix}/{part}" if prefix else part
            found: tuple[int, os.stat_result] | None = None
            below: list[int] = []
            for layer in layers:
                st = self._stat(layer, prefix)
                if st is None:
                    continue
                if is_whiteout(st):
                    break
                is_dir = stat.S_ISDIR(st.st_mode)
                if found is None:
                    found = (layer, st)
                elif not is_dir:
                    break
                if not is_dir:
                    break
                below.append(layer)
                if self._opaque(layer, prefix):
                    break
            if found is None:
                return None
            if depth == len(parts) - 1:
                return found
            if stat.S_ISLNK(found[1].st_mode):
                raise OSError(errno.ELOOP, "a symlink before the last name", rel)
            if not stat.S_ISDIR(found[1].st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), rel)
            layers = below
        return (UPPER, os.fstat(self.upper.fd))  # the root itself

    def lookup_symlink(self, abs_path: str) -> str | None:
        """``rootpath.Lookup`` over the merged view."""
        rel = abs_path[1:]
        if self.upper.is_known_dir(rel):
            return None
        try:
            found = self.lookup(rel)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            rel = in_resolved_parent(rel, self.lookup_symlink, self.upper.links)
            found = self.lookup(rel)
        if found is None or not stat.S_ISLNK(found[1].st_mode):
            return None
        layer, _ = found
        if layer == UPPER:
            return self.upper.readlink(rel)
        return os.readlink(os.path.join(self.lowers[layer], rel))

    def lower_path(self, layer: int, rel: str) -> str:
        """The host path of ``rel`` in lowerdir ``layer``."""
        return os.path.join(self.lowers[layer], rel)

    def lower_names(self, rel: str) -> list[str]:
        """Names visible in merged directory ``rel`` from the lowerdirs alone."""
        names: set[str] = set()
        for layer in range(len(self.lowers)):
            path = os.path.join(self.lowers[layer], rel)
            try:
                entries = os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in entries:
                child = f"{rel}/{name}" if rel else name
                if self.lookup(child, lowers_only=True) is not None:
                    names.add(name)
        return sorted(names)
