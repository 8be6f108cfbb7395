"""The ``Mount`` value and mounting and unmounting lists of them, as containerd's ``mount``.

A list of mounts describes one file system: the first is mounted on the target, each
next one on top of it or on its own ``target`` path inside it. Ordinary types go
straight to mount(2); ``fuse.*`` and ``fuse3.*`` types through their mount helpers.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from layerdiff.archive.rootpath import root_path
from layerdiff.errors import (
    InvalidArgumentError,
    InvalidLayerError,
    LayerdiffError,
    NotFoundError,
    TargetError,
    UnsupportedError,
)
from layerdiff.mount import loop, overlay, syscalls
from layerdiff.mount.options import (
    MS_BIND,
    MS_RDONLY,
    MS_REMOUNT,
    MS_SILENT,
    check_option,
    parse_options,
)

#: Mount types whose prefix names a mount helper: "fuse3.sshfs" -> mount.fuse3 -t sshfs.
HELPERS = {"fuse.": "mount.fuse", "fuse3.": "mount.fuse3"}
#: An unmount meeting EBUSY is tried again this many times, this long apart (containerd's).
_BUSY_TRIES = 50
_BUSY_WAIT = 0.05


@dataclass(frozen=True)
class Mount:
    """One mount: what mount(8) would be given, as containerd's ``mount.Mount``.

    ``target`` is a path inside the directory the list is mounted on ("" = that
    directory itself); ``options`` are fstab-style, one option per item.
    """

    type: str
    source: str
    target: str = ""
    options: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("type", "source", "target"):
            try:
                check_option(getattr(self, name))
            except InvalidArgumentError as err:
                raise InvalidArgumentError(f"mount {name}: {err}") from None
        if isinstance(self.options, str) or not isinstance(self.options, Iterable):
            raise InvalidArgumentError("mount options must be a list of strings")
        object.__setattr__(self, "options", tuple(self.options))
        parse_options(self.options)  # rejects what no kernel call could take

    @property
    def readonly(self) -> bool:
        """The mount gives a read-only file system (an overlay without upperdir is one)."""
        if self.type == "overlay" and "ro" not in self.options:
            return overlay.upperdir(self.options) is None
        return parse_options(self.options).readonly

    def mount(self, root: str) -> None:
        """Mount on ``root`` (or on ``target`` inside it); raise a ``LayerdiffError``."""
        target = resolve_target(root, self.target)
        try:
            self._mount(target)
        except OSError as err:
            raise _mount_error(self, target, err) from None

    def _mount(self, target: str) -> None:
        for prefix, helper in HELPERS.items():
            if self.type.startswith(prefix):
                self._mount_with_helper(helper, self.type[len(prefix):], target)
                return
        parsed = parse_options(self.options)
        data = ",".join(parsed.data)
        if self.type != "overlay" and not overlay.fits_in_page(data):
            raise InvalidArgumentError(f"options of the {self.type} mount are longer than a page")
        # A remount without data changes only flags: the remount below does it.
        if not parsed.flags & MS_REMOUNT or data:
            if parsed.loop:
                with loop.attach(self.source, readonly=parsed.readonly,
                                 direct_io=parsed.direct_io) as device:
                    syscalls.mount(device, target, self.type, parsed.flags, data)
            elif self.type == "overlay":
                overlay.mount_overlay(self.source, target, parsed.flags, parsed.data)
            else:
                syscalls.mount(self.source, target, self.type, parsed.flags, data)
        if parsed.propagation:
            syscalls.mount("", target, None, parsed.propagation | MS_SILENT, None)
        if parsed.flags & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
            # A bind mount ignores every flag but MS_REC; a remount sets them.
            syscalls.mount("", target, None, parsed.flags | MS_REMOUNT, None)

    def _mount_with_helper(self, helper: str, subtype: str, target: str) -> None:
        program = shutil.which(helper)
        if program is None:
            raise UnsupportedError(f"mount type {self.type!r} needs {helper}, which is not "
                                   "installed")
        args = [program, self.source, target]
        for option in self.options:
            args += ["-o", option]
        args += ["-t", subtype]
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = " ".join(result.stdout.split() + result.stderr.split())
            raise TargetError(f"{helper} could not mount {self.source!r} on {target!r}: "
                              f"{output or f'exit status {result.returncode}'}")


def resolve_target(root: str, target: str) -> str:
    """``target`` inside ``root``, symlinks resolved as if ``root`` were ``/``."""
    def lookup(path: str) -> str | None:
        full = os.path.join(root, path.lstrip("/"))
        return os.readlink(full) if os.path.islink(full) else None

    if not target:
        return root
    try:
        return os.path.join(root, root_path(target, lookup))
    except InvalidLayerError:  # too many symlinks: the only complaint root_path has
        raise InvalidArgumentError(f"mount target {target!r}: too many symlinks") from None


def _mount_error(m: Mount, target: str, err: OSError) -> LayerdiffError:
    what = f"cannot mount {m.type} {m.source!r} on {target!r}: {err.strerror}"
    if err.errno == errno.ENOENT:
        return NotFoundError(what)
    if err.errno == errno.ENODEV:
        return UnsupportedError(what + " (unknown file system type)")
    if err.errno in (errno.EINVAL, errno.E2BIG):
        return InvalidArgumentError(what)
    return TargetError(what)


_ESCAPED = re.compile(rb"\\([0-7]{3})")


def mount_points(pid: int | str = "self") -> list[str]:
    """Every mount point of ``pid``'s mount namespace, from ``/proc/PID/mountinfo``."""
    with open(f"/proc/{pid}/mountinfo", "rb") as info:
        # The fifth field, with space, tab, newline and backslash escaped in octal.
        return [os.fsdecode(_ESCAPED.sub(lambda m: bytes([int(m[1], 8)]), line.split()[4]))
                for line in info]


def mount_all(mounts: Sequence[Mount], target: str | os.PathLike[str]) -> None:
    """Mount ``mounts`` in order on ``target``; on failure, what was mounted stays mounted.

    Callers undo a partial mount with ``unmount_mounts`` (``temporary_mount`` does).
    """
    for m in mounts:
        m.mount(os.fspath(target))


def unmount_all(target: str | os.PathLike[str], flags: int = 0) -> None:
    """Unmount everything stacked on ``target``, until it is no mount point any more.

    A target that does not exist is left alone; a busy one is tried again for a few
    seconds. Raises ``TargetError`` when an unmount fails.
    """
    path = os.fspath(target)
    if not path or not os.path.lexists(path):
        return
    busy = 0
    while True:
        try:
            syscalls.umount2(path, flags)
        except OSError as err:
            if err.errno == errno.EINVAL:  # not a mount point (any more): done
                return
            if err.errno == errno.EBUSY and busy < _BUSY_TRIES:
                busy += 1
                time.sleep(_BUSY_WAIT)
                continue
            raise TargetError(f"cannot unmount {path!r}: {err.strerror}") from None


def unmount_mounts(mounts: Sequence[Mount], target: str | os.PathLike[str],
                   flags: int = 0) -> None:
    """Undo ``mount_all(mounts, target)``, last mount first, even after a partial mount.

    Every mount point is tried; the first failure is raised afterwards.
    """
    first: LayerdiffError | None = None
    root = os.fspath(target)
    for m in reversed(mounts):
        try:
            unmount_all(resolve_target(root, m.target), flags)
        except LayerdiffError as err:
            first = first or err
        except OSError as err:  # resolving the target inside the mounted tree
            first = first or TargetError(f"cannot find mount point {m.target!r} in {root!r}: "
                                         f"{err.strerror}")
    if first is not None:
        raise first


def readonly_mounts(mounts: Sequence[Mount]) -> list[Mount]:
    """The same mounts, read-only: ``ro`` added, or an overlay's upperdir made a lowerdir."""
    out = []
    for m in mounts:
        if m.type == "overlay":
            options = overlay.readonly_options(m.options)
        else:
            options = (*(o for o in m.options if o not in ("ro", "rw")), "ro")
        out.append(Mount(m.type, m.source, m.target, options))
    return out
