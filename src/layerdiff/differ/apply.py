"""Applying a layer onto mounts: containerd's ``diff/apply`` dispatch.

- One overlay mount: the layer goes straight into its upperdir, in overlay form, with
  its lowerdirs as parents; nothing is mounted. Not in a user namespace, where the
  0/0 character devices of whiteouts cannot be made: there, the general case.
- One aufs mount: the layer goes into its read-write branch, in aufs form.
- Anything else (or an overlay without upperdir, an aufs mount whose branches cannot
  be read): the mounts are mounted on a temporary directory and the layer is applied
  there naively.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from layerdiff.applier import Source, apply_layer
from layerdiff.diff import ApplyOptions, WhiteoutMode
from layerdiff.errors import TargetError
from layerdiff.mount import Mount, overlay, syscalls, temporary_mount
from layerdiff.oci import Descriptor


def apply_to_mounts(
    source: Source,
    mounts: Sequence[Mount],
    options: ApplyOptions | None = None,
    *,
    temp_root: str | None = None,
    media_type: str | None = None,
    sync_fs: bool = False,
) -> Descriptor:
    """Apply the layer read from ``source`` onto the file system ``mounts`` describe.

    For an overlay or aufs mount, the mode, parents and ``userxattr`` of ``options`` are
    taken from the mount; its other fields apply in every case. ``temp_root``: where a
    temporary mount point is made (see ``layerdiff.mount.temp.default_root``).
    ``media_type`` goes to ``apply_layer``. ``sync_fs``: flush the file system written
    to disk before returning, as containerd's ``WithSyncFs`` (an overlay's upperdir, a
    bind mount's source; other mounts are flushed when they are unmounted, if ever).
    Raises a ``LayerdiffError`` subclass on any failure, after everything was unmounted.
    """
    options = options or ApplyOptions()
    if len(mounts) == 1:
        direct = direct_target(mounts[0], options)
        if direct is not None:
            dest, direct_options = direct
            applied = apply_layer(source=source, dest=dest, options=direct_options,
                                  media_type=media_type)
            if sync_fs and mounts[0].type == "overlay":
                _sync(dest)
            return applied
    with temporary_mount(mounts, root=temp_root) as root:
        applied = apply_layer(source=source, dest=root, options=options, media_type=media_type)
    if sync_fs and len(mounts) == 1 and mounts[0].type == "bind":
        _sync(mounts[0].source)
    return applied


def _sync(path: str) -> None:
    try:
        syscalls.syncfs(path)
    except OSError as err:
        raise TargetError(f"cannot sync the file system of {path!r}: {err.strerror}") from None


def direct_target(mount: Mount, options: ApplyOptions) -> tuple[str, ApplyOptions] | None:
    """Where a layer goes without mounting ``mount``, and how; ``None``: mount it."""
    if mount.type == "overlay" and not running_in_userns():
        upper = overlay.upperdir(mount.options)
        if upper is None:
            return None
        return upper, dataclasses.replace(
            options, mode=WhiteoutMode.OVERLAY, parents=tuple(overlay.lowerdirs(mount.options)),
            userxattr="userxattr" in mount.options)
    if mount.type == "aufs":
        branches = aufs_branches(mount.options)
        if branches is None:
            return None
        upper, lowers = branches
        return upper, dataclasses.replace(
            options, mode=WhiteoutMode.AUFS, parents=tuple(lowers), userxattr=False)
    return None


def aufs_branches(options: Sequence[str]) -> tuple[str, list[str]] | None:
    """The read-write branch and the read-only ones of containerd's aufs options.

    containerd's aufs snapshotter writes ``br:<upper>=rw[:<lower>=ro+wh]*``; anything
    else gives ``None``.
    """
    upper: str | None = None
    lowers: list[str] = []
    for option in options:
        if not option.startswith("br:"):
            continue
        for branch in option[len("br:"):].split(":"):
            if branch.endswith("=rw") and upper is None:
                upper = branch[: -len("=rw")]
            elif branch.endswith("=ro+wh") and upper is not None:
                lowers.append(branch[: -len("=ro+wh")])
            else:
                return None
    return None if upper is None else (upper, lowers)


@functools.cache
def running_in_userns() -> bool:
    """This process runs in a user namespace (other than the initial one)."""
    try:
        with open("/proc/self/uid_map") as uid_map:
            fields = uid_map.read().split()
    except OSError:
        return False
    # The initial namespace maps all 2^32 - 1 ids onto themselves.
    return fields != ["0", "0", "4294967295"]
