"""Mounting a list of mounts on a fresh directory for the length of a ``with`` block.

As containerd's ``mount.WithTempMount``. Cleanup unmounts everything, then removes the
directory with rmdir(2), never recursively: if an unmount failed, the directory still
holds the mounted file system, and deleting "the temporary directory's contents" would
delete the user's data. A failed unmount is raised (with the block's own error, if
any, as its cause); the directory is then left behind, empty or mounted.

A process killed inside the block leaves its mounts behind; ``cleanup_temp_mounts``
removes them when the next server starts on the same root, as containerd's
``mount.CleanupTempMounts`` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence

from layerdiff.errors import LayerdiffError, TargetError
from layerdiff.mount.mount import (
    Mount,
    mount_all,
    mount_points,
    readonly_mounts,
    unmount_all,
    unmount_mounts,
)

log = logging.getLogger("layerdiff.mount")

#: Environment variable naming where temporary mount points are made by default.
ROOT_ENV = "LAYERDIFF_MOUNT_ROOT"
#: The name of every temporary mount point starts so.
PREFIX = "layerdiff-mount-"


def default_root() -> str:
    """Where temporary mount points go: $LAYERDIFF_MOUNT_ROOT, $XDG_RUNTIME_DIR or /tmp."""
    return (os.environ.get(ROOT_ENV) or os.environ.get("XDG_RUNTIME_DIR")
            or tempfile.gettempdir())


def without_volatile(mounts: Sequence[Mount]) -> list[Mount]:
    """The mounts without overlay's ``volatile``: a volatile upperdir cannot be mounted twice."""
    return [Mount(m.type, m.source, m.target,
                  tuple(o for o in m.options if o not in ("volatile", "fsync=volatile")))
            if m.type == "overlay" else m for m in mounts]


@contextlib.contextmanager
def temporary_mount(
    mounts: Sequence[Mount], *, root: str | os.PathLike[str] | None = None,
    readonly: bool = False,
) -> Iterator[str]:
    """Mount ``mounts`` on a new directory under ``root``; yield its path.

    ``readonly``: mount them read-only (``readonly_mounts``). On leaving, everything is
    unmounted and the directory removed, whatever happened in the block.
    """
    parent = os.fspath(root) if root is not None else default_root()
    try:
        point = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    except OSError as err:
        raise TargetError(f"cannot make a mount point in {parent!r}: {err.strerror}") from None
    mounts = readonly_mounts(mounts) if readonly else list(mounts)
    try:
        # Unmounting must also follow a failure halfway through the list.
        with _unmounted_after(mounts, point):
            mount_all(without_volatile(mounts), point)
            yield point
    finally:
        # rmdir, not rmtree (see the module's docstring): a directory still mounted
        # fails with EBUSY and one holding files with ENOTEMPTY, and both are kept.
        try:
            os.rmdir(point)
        except OSError as err:
            log.error("cannot remove the temporary mount point %s: %s", point, err.strerror)


@contextlib.contextmanager
def _unmounted_after(mounts: Sequence[Mount], point: str) -> Iterator[None]:
    try:
        yield
    except BaseException as body_error:
        try:
            unmount_mounts(mounts, point)
        except LayerdiffError as err:
            raise TargetError(f"{err} (after: {body_error})") from body_error
        raise
    unmount_mounts(mounts, point)


def cleanup_temp_mounts(root: str | os.PathLike[str]) -> list[str]:
    """Unmount what is mounted on or below the ``layerdiff-mount-*`` directories of
    ``root`` (the deepest first), remove those directories; return the unmounted points.

    For a process starting on a ``root`` that only it uses: what a killed predecessor
    left there is dead, but another live process's mounts under the same root would be
    torn down too. Failures are logged and skipped, as containerd does at start-up.
    """
    base = os.path.realpath(root)  # mountinfo shows paths with symlinks resolved
    points = sorted({p for p in mount_points() if _is_temporary(base, p)},
                    key=len, reverse=True)
    done = []
    for point in points:
        try:
            unmount_all(point)
        except LayerdiffError as err:
            log.warning("cannot clean up a leftover temporary mount: %s", err)
            continue
        log.info("unmounted the leftover temporary mount %s", point)
        done.append(point)
    # Only the directories this module made, and only with rmdir(2): a mount point nested
    # inside a mounted tree belongs to that tree, and a non-empty directory may still be
    # a mount that failed to go (see the module's docstring).
    try:
        entries = [e for e in os.scandir(base)
                   if e.name.startswith(PREFIX) and e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return done
    for entry in entries:
        try:
            os.rmdir(entry.path)
        except OSError as err:
            log.warning("cannot remove the leftover mount point %s: %s", entry.path,
                        err.strerror)
        else:
            log.info("removed the leftover mount point %s", entry.path)
    return done


def _is_temporary(base: str, point: str) -> bool:
    first = os.path.relpath(point, base).split(os.sep, 1)[0]
    return first.startswith(PREFIX)
