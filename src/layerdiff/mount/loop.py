"""Loop devices: a file attached as a block device, for the ``loop`` mount option.

The device is configured in one ioctl (LOOP_CONFIGURE, Linux 5.8) with autoclear set:
the kernel detaches it when its last user goes, so once the file system is mounted the
caller only closes the device, and a failed mount leaves nothing attached. Two callers
may be handed the same free device; the loser gets EBUSY and asks for another.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator

from layerdiff.errors import NotFoundError, TargetError, UnavailableError

LOOP_CONTROL = "/dev/loop-control"
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4
LO_FLAGS_DIRECT_IO = 16

# struct loop_config { __u32 fd; __u32 block_size; struct loop_info64 info; __u64 reserved[8]; }
# loop_info64: 5 __u64, 4 __u32 (lo_flags last), 64+64+32 bytes of names and key, 2 __u64.
_LOOP_CONFIG = struct.Struct("=II 5Q 4I 64s64s32s 2Q 8Q")
_ATTEMPTS = 100


@contextlib.contextmanager
def attach(path: str, *, readonly: bool, direct_io: bool = False) -> Iterator[str]:
    """Attach the file ``path`` to a free loop device; yield the device's path.

    The device is released (autoclear) when nothing uses it any more: after the
    ``with`` block if nothing was mounted from it, else when that mount goes.
    """
    try:
        backing = os.open(path, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"loop source {path!r} does not exist") from None
    except OSError as err:
        raise TargetError(f"cannot open loop source {path!r}: {err.strerror}") from None
    try:
        device, fd = _configure(backing, path, readonly, direct_io)
    finally:
        os.close(backing)
    try:
        yield device
    finally:
        os.close(fd)


def _configure(backing: int, path: str, readonly: bool, direct_io: bool) -> tuple[str, int]:
    flags = LO_FLAGS_AUTOCLEAR
    if readonly:
        flags |= LO_FLAGS_READ_ONLY
    if direct_io:
        flags |= LO_FLAGS_DIRECT_IO
    name = os.fsencode(path)[:63]
    config = _LOOP_CONFIG.pack(backing, 0, 0, 0, 0, 0, 0, 0, 0, 0, flags, name, b"", b"",
                               0, 0, *[0] * 8)
    try:
        control = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        raise TargetError(f"cannot open {LOOP_CONTROL}: {err.strerror}") from None
    try:
        for _ in range(_ATTEMPTS):
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
            device = f"/dev/loop{number}"
            fd = os.open(device, (os.O_RDONLY if readonly else os.O_RDWR) | os.O_CLOEXEC)
            try:
                fcntl.ioctl(fd, LOOP_CONFIGURE, config)
            except OSError as err:
                os.close(fd)
                if err.errno == errno.EBUSY:  # another caller took this device first
                    continue
                raise TargetError(f"cannot attach {path!r} to {device}: {err.strerror}") from None
            return device, fd
    except OSError as err:
        raise TargetError(f"cannot get a free loop device: {err.strerror}") from None
    finally:
        os.close(control)
    raise UnavailableError(f"no free loop device for {path!r} after {_ATTEMPTS} attempts")
