"""Computing a layer from two lists of mounts: containerd's walking differ.

Both are mounted read-only on temporary directories (an overlay's upperdir becomes
its top lowerdir) and walked side by side. When the upper is one overlay mount whose
lowerdirs are exactly the lower's view (a bind mount of one directory, or an overlay of
the same lowerdirs), nothing is mounted: the changes are read from the upperdir alone,
as containerd 2.x's overlay-aware differs do, which costs what the change costs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from layerdiff.comparer import Writable, diff_trees
from layerdiff.diff import DiffOptions
from layerdiff.mount import Mount, overlay, parse_options, temporary_mount
from layerdiff.mount.options import MS_BIND
from layerdiff.oci import Descriptor

#: Options under which an upperdir holds only part of an entry: the walk is needed.
_PARTIAL_COPY_UP = ("metacopy=on", "redirect_dir=on", "redirect_dir=follow")


def compare_mounts(
    lower: Sequence[Mount],
    upper: Sequence[Mount],
    out: Writable,
    options: DiffOptions | None = None,
    *,
    temp_root: str | None = None,
) -> Descriptor:
    """Write to ``out`` the layer that turns ``lower``'s file system into ``upper``'s.

    An empty ``lower`` is an empty tree. ``options.upper_overlay`` and
    ``options.userxattr`` are decided here from the mounts. Returns the layer's
    descriptor; raises a ``LayerdiffError`` subclass on any failure, after everything
    was unmounted.
    """
    options = options or DiffOptions()
    fast = overlay_fast_path(lower, upper)
    if fast is not None:
        upperdir, lowerdirs, userxattr = fast
        return diff_trees(lowerdirs, upperdir, out, dataclasses.replace(
            options, upper_overlay=True, userxattr=userxattr))
    walk = dataclasses.replace(options, upper_overlay=False, userxattr=False)
    with temporary_mount(upper, root=temp_root, readonly=True) as upper_root:
        if not lower:
            return diff_trees(None, upper_root, out, walk)
        with temporary_mount(lower, root=temp_root, readonly=True) as lower_root:
            return diff_trees(lower_root, upper_root, out, walk)


def overlay_fast_path(
    lower: Sequence[Mount], upper: Sequence[Mount]
) -> tuple[str, list[str], bool] | None:
    """(upperdir, lowerdirs, userxattr) when the changes can be read from an upperdir."""
    if len(upper) != 1 or upper[0].type != "overlay" or upper[0].target:
        return None
    options = upper[0].options
    upperdir = overlay.upperdir(options)
    lowerdirs = overlay.lowerdirs(options)
    if upperdir is None or not lowerdirs or any(o in _PARTIAL_COPY_UP for o in options):
        return None
    view = lower_view(lower)
    if view is None or [_norm(d) for d in view] != [_norm(d) for d in lowerdirs]:
        return None
    return upperdir, lowerdirs, "userxattr" in options


def lower_view(mounts: Sequence[Mount]) -> list[str] | None:
    """The directories whose overlay is what ``mounts`` show, nearest first; ``None``: unknown."""
    if len(mounts) != 1 or mounts[0].target:
        return None
    m = mounts[0]
    if m.type == "overlay":
        upperdir = overlay.upperdir(m.options)
        return ([upperdir] if upperdir else []) + overlay.lowerdirs(m.options)
    if parse_options(m.options).flags & MS_BIND:
        return [m.source]
    return None


def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))
