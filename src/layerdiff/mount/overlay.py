"""overlayfs options: reading the layer directories, and mounting past the page limit.

mount(2) copies at most one page of options, and an image with a hundred layers of
long snapshot paths needs more. The new mount API has no such limit: each layer is
given to ``fsconfig`` on its own (``lowerdir+``, Linux 6.8), as an open directory fd
(Linux 6.13; a string value is cut at 256 bytes) or a string. On older kernels the
layers are written relative to their common parent, as containerd does; containerd
changes the working directory of a locked OS thread for that, and so does this module:
a short-lived thread unshares its working directory (``unshare(CLONE_FS)``) before
changing it, so that no other thread of the process sees the change.
"""

from __future__ import annotations

import errno
import functools
import os
import threading
from collections.abc import Callable, Sequence

from layerdiff.mount import syscalls
from layerdiff.mount.options import (
    MS_DIRSYNC,
    MS_LAZYTIME,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_RDONLY,
    MS_RELATIME,
    MS_SILENT,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
)

LOWERDIR = "lowerdir="
UPPERDIR = "upperdir="
WORKDIR = "workdir="
#: containerd keeps this much of the page free for the kernel's own additions.
_PAGE_MARGIN = 512

# MS_* flag -> MOUNT_ATTR_* of fsmount(2); relatime is MOUNT_ATTR_RELATIME == 0.
_ATTRS = {
    MS_RDONLY: 0x1,
    MS_NOSUID: 0x2,
    MS_NODEV: 0x4,
    MS_NOEXEC: 0x8,
    MS_NOATIME: 0x10,
    MS_STRICTATIME: 0x20,
    MS_NODIRATIME: 0x80,
    MS_NOSYMFOLLOW: 0x200000,
}
# MS_* flag -> the superblock flag fsconfig(2) takes by name.
_SB_FLAGS = {MS_RDONLY: "ro", MS_SYNCHRONOUS: "sync", MS_DIRSYNC: "dirsync",
             MS_LAZYTIME: "lazytime", MS_MANDLOCK: "mand"}
_HANDLED = MS_RELATIME | MS_SILENT | sum(_ATTRS) | sum(_SB_FLAGS)


def split_layers(value: str) -> list[str]:
    """The directories of a ``lowerdir=`` value: ``:``-separated, ``\\`` escaping a character.

    An empty item stands for overlayfs's ``::`` (the layers after it are data-only).
    """
    layers: list[str] = []
    current: list[str] = []
    chars = iter(value)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            layers.append("".join(current))
            current = []
        else:
            current.append(char)
    layers.append("".join(current))
    return layers


def _escape(layer: str) -> str:
    return layer.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def lowerdirs(options: Sequence[str]) -> list[str]:
    """The lower directories named in overlay ``options``, nearest first.

    Data-only layers (after ``::``) are left out: they are not part of the merged view.
    """
    found: list[str] = []
    for option in options:
        if option.startswith(LOWERDIR):
            layers = split_layers(option[len(LOWERDIR):])
            found = layers[: layers.index("")] if "" in layers else layers
        elif option.startswith("lowerdir+="):
            found.append(option[len("lowerdir+="):])
    return found


def upperdir(options: Sequence[str]) -> str | None:
    """The upper directory named in overlay ``options``, if any."""
    found = None
    for option in options:
        if option.startswith(UPPERDIR):
            found = option[len(UPPERDIR):]
    return found


def readonly_options(options: Sequence[str]) -> tuple[str, ...]:
    """Overlay ``options`` for a read-only view: the upperdir becomes the top lowerdir.

    As containerd's ``readonlyOverlay``: a lowerdir-only overlay cannot be written,
    and it mounts while another mount uses the same upper and work directories.
    """
    upper = upperdir(options)
    out = [o for o in options
           if not o.startswith((UPPERDIR, WORKDIR, "uidmap=", "gidmap="))]
    if upper is not None:
        out = [LOWERDIR + _escape(upper) + ":" + o[len(LOWERDIR):]
               if o.startswith(LOWERDIR) else o for o in out]
    return tuple(out)


def fits_in_page(data: str) -> bool:
    """mount(2) takes ``data`` whole (it copies at most one page)."""
    return len(os.fsencode(data)) < os.sysconf("SC_PAGE_SIZE") - _PAGE_MARGIN


def mount_overlay(source: str, target: str, flags: int, data: Sequence[str]) -> None:
    """Mount an overlay however long its options; raises ``OSError``."""
    if fits_in_page(",".join(data)):
        syscalls.mount(source, target, "overlay", flags, ",".join(data))
        return
    if takes_layers_one_by_one():
        mount_with_fsconfig(source, target, flags, data)
    else:
        mount_compacted(source, target, flags, data)


@functools.cache
def takes_layers_one_by_one() -> bool:
    """The kernel has the new mount API and overlay's ``lowerdir+`` (Linux 6.8)."""
    try:
        context = syscalls.fsopen("overlay")
    except OSError:  # ENOSYS: no new mount API; ENODEV: no overlayfs (mount(2) says so)
        return False
    try:
        syscalls.fsconfig_string(context, "lowerdir+", "/")
    except OSError:
        return False
    finally:
        os.close(context)
    return True


def mount_with_fsconfig(source: str, target: str, flags: int, data: Sequence[str]) -> None:
    """Mount an overlay through fsopen/fsconfig/fsmount/move_mount, one layer per call."""
    unknown = flags & ~_HANDLED
    if unknown:
        raise OSError(errno.EINVAL, f"mount flags {unknown:#x} do not apply to a new overlay")
    context = syscalls.fsopen("overlay")
    try:
        syscalls.fsconfig_string(context, "source", source or "overlay")
        for option in data:
            key, sep, value = option.partition("=")
            if key == "lowerdir":
                data_only = False
                for layer in split_layers(value):
                    if layer:
                        _set_directory(context, "datadir+" if data_only else "lowerdir+", layer)
                    data_only = data_only or not layer
            elif key in ("lowerdir+", "datadir+", "upperdir", "workdir"):
                _set_directory(context, key, value)
            elif sep:
                syscalls.fsconfig_string(context, key, value)
            else:
                syscalls.fsconfig_flag(context, key)
        for flag, name in _SB_FLAGS.items():
            if flags & flag:
                syscalls.fsconfig_flag(context, name)
        syscalls.fsconfig_create(context)
        attrs = sum(attr for flag, attr in _ATTRS.items() if flags & flag)
        mount_fd = syscalls.fsmount(context, attrs)
    finally:
        os.close(context)
    try:
        syscalls.move_mount(mount_fd, target)
    finally:
        os.close(mount_fd)


def _set_directory(context: int, key: str, path: str) -> None:
    """Give a directory option by fd, or by name where the kernel takes no fd."""
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syscalls.fsconfig_fd(context, key, fd)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
        syscalls.fsconfig_string(context, key, path)
    finally:
        os.close(fd)


def mount_compacted(source: str, target: str, flags: int, data: Sequence[str]) -> None:
    """Mount an overlay with its lowerdirs relative to their common parent directory.

    The mount(2) call runs on a thread of its own whose working directory is that
    parent; the rest of the process keeps its own.
    """
    index = next((i for i, o in enumerate(data) if o.startswith(LOWERDIR)), None)
    layers = split_layers(data[index][len(LOWERDIR):]) if index is not None else []
    dirs = [d for d in layers if d]
    parent = os.path.commonpath(dirs) if len(dirs) > 1 and all(
        os.path.isabs(d) for d in dirs) else "/"
    if index is None or parent == "/":
        syscalls.mount(source, target, "overlay", flags, ",".join(data))
        return
    relative = ":".join(_escape(os.path.relpath(d, parent)) if d else "" for d in layers)
    compact = [*data[:index], LOWERDIR + relative, *data[index + 1:]]
    if not fits_in_page(",".join(compact)):
        raise OSError(errno.E2BIG, f"overlay options longer than a page, even with the "
                                   f"lowerdirs relative to {parent}")
    absolute_target = os.path.abspath(target)
    _in_directory(parent, lambda: syscalls.mount(
        source, absolute_target, "overlay", flags, ",".join(compact)))


def _in_directory(directory: str, call: Callable[[], None]) -> None:
    error: list[BaseException] = []

    def run() -> None:
        try:
            syscalls.unshare(syscalls.CLONE_FS)  # from here on, chdir is this thread's own
            os.chdir(directory)
            call()
        except BaseException as err:  # handed to the caller's thread, raised there
            error.append(err)

    thread = threading.Thread(target=run, name="layerdiff-mount-chdir")
    thread.start()
    thread.join()
    if error:
        raise error[0]
