"""The mount system calls, through ctypes: each raises ``OSError`` with the errno.

mount(2), umount2(2), syncfs(2) and unshare(2) through libc; the new mount API
(fsopen, fsconfig, fsmount, move_mount) through syscall(2), whose numbers are the same
on every architecture but alpha since Linux 5.2.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.syscall.restype = ctypes.c_long

_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432

FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100
CLONE_FS = 0x200
MNT_DETACH = 0x2


def _check(result: int, what: str, path: str | None = None) -> int:
    """Raise the errno of a failed call; ``what`` goes in a note, for debugging."""
    if result < 0:
        err = ctypes.get_errno()
        error = OSError(err, os.strerror(err), path)
        error.add_note(f"in {what}")
        raise error
    return result


def _c(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2)."""
    result = _libc.mount(_c(source), _c(target), _c(fstype), flags, _c(data or None))
    _check(result, "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_c(target), flags), "umount", target)


def syncfs(path: str) -> None:
    """syncfs(2) on the file system holding ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.syncfs(fd), "syncfs", path)
    finally:
        os.close(fd)


def unshare(flags: int) -> None:
    """unshare(2): with CLONE_FS, the calling thread gets its own working directory."""
    _check(_libc.unshare(flags), "unshare")


def fsopen(fstype: str) -> int:
    """fsopen(2): a file-system context fd, close-on-exec."""
    fd = _libc.syscall(_SYS_FSOPEN, _c(fstype), ctypes.c_uint(FSOPEN_CLOEXEC))
    return _check(fd, f"fsopen {fstype}")


def fsconfig_string(fd: int, key: str, value: str) -> None:
    """fsconfig(2) FSCONFIG_SET_STRING: one ``key=value`` option."""
    result = _libc.syscall(_SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_SET_STRING),
                           _c(key), _c(value), ctypes.c_int(0))
    _check(result, f"fsconfig {key}={value}")


def fsconfig_flag(fd: int, key: str) -> None:
    """fsconfig(2) FSCONFIG_SET_FLAG: one option without a value."""
    result = _libc.syscall(_SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_SET_FLAG),
                           _c(key), None, ctypes.c_int(0))
    _check(result, f"fsconfig {key}")


def fsconfig_fd(fd: int, key: str, value_fd: int) -> None:
    """fsconfig(2) FSCONFIG_SET_FD: an option naming a file by an open fd (no length limit)."""
    result = _libc.syscall(_SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_SET_FD),
                           _c(key), None, ctypes.c_int(value_fd))
    _check(result, f"fsconfig {key}=<fd>")


def fsconfig_create(fd: int) -> None:
    """fsconfig(2) FSCONFIG_CMD_CREATE: make the superblock."""
    result = _libc.syscall(_SYS_FSCONFIG, ctypes.c_int(fd), ctypes.c_uint(FSCONFIG_CMD_CREATE),
                           None, None, ctypes.c_int(0))
    _check(result, "fsconfig create")


def fsmount(fd: int, attr_flags: int) -> int:
    """fsmount(2): a detached mount of the context's superblock, close-on-exec."""
    result = _libc.syscall(_SYS_FSMOUNT, ctypes.c_int(fd), ctypes.c_uint(FSMOUNT_CLOEXEC),
                           ctypes.c_uint(attr_flags))
    return _check(result, "fsmount")


def move_mount(mount_fd: int, target: str) -> None:
    """move_mount(2): attach the detached mount ``mount_fd`` at ``target``."""
    result = _libc.syscall(_SYS_MOVE_MOUNT, ctypes.c_int(mount_fd), b"", ctypes.c_int(AT_FDCWD),
                           _c(target), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
    _check(result, "move_mount", target)
