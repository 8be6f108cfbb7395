"""Mount option strings → what mount(2) takes: flags, a data string, propagation, loop.

Pure and total: any sequence of strings gives a ``ParsedOptions`` or an
``InvalidArgumentError``, never another exception. Options not in the table are
file-system data (``lowerdir=...``, ``size=...``), passed on in order, as containerd's
``parseMountOptions`` does; later options win over earlier ones (``ro`` then ``rw`` is
``rw``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from layerdiff.errors import InvalidArgumentError

# <linux/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

#: option -> (clears the flag instead of setting it, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "lazytime": (False, MS_LAZYTIME),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}

#: The kernel changes propagation only in a call of its own, with no other flag.
PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

LOOP = "loop"
DIRECT_IO = "direct-io"


@dataclass(frozen=True)
class ParsedOptions:
    """Options split the way mount(2) wants them."""

    #: MS_* flags of the mount call itself (no propagation flag).
    flags: int = 0
    #: MS_SHARED/PRIVATE/SLAVE/UNBINDABLE (with MS_REC) for a second call; 0: none.
    propagation: int = 0
    #: File-system specific options, in order; joined with "," they are mount(2)'s data.
    data: tuple[str, ...] = ()
    #: The source is a file to attach to a loop device first.
    loop: bool = False
    #: That loop device does direct I/O on its backing file.
    direct_io: bool = False

    @property
    def readonly(self) -> bool:
        """The mount is read-only."""
        return bool(self.flags & MS_RDONLY)


def parse_options(options: Sequence[str]) -> ParsedOptions:
    """Split fstab-style ``options`` into flags, propagation, data and the loop switch."""
    if isinstance(options, (str, bytes)):
        raise InvalidArgumentError("mount options must be a list of strings, not one string")
    flags = propagation = 0
    data: list[str] = []
    loop = False
    for option in options:
        try:
            check_option(option)
        except InvalidArgumentError as err:
            raise InvalidArgumentError(f"mount option {err}") from None
        if option in FLAGS:
            clear, flag = FLAGS[option]
            flags = flags & ~flag if clear else flags | flag
        elif option in PROPAGATION:
            propagation |= PROPAGATION[option]
        elif option == LOOP:
            loop = True
        else:
            data.append(option)
    # direct-io is the loop device's when there is one, else the file system's.
    direct_io = loop and DIRECT_IO in data
    if direct_io:
        data.remove(DIRECT_IO)
    return ParsedOptions(flags, propagation, tuple(data), loop, direct_io)


def check_option(option: object) -> str:
    """Return ``option`` if it can be handed to the kernel, else raise InvalidArgumentError."""
    if not isinstance(option, str):
        raise InvalidArgumentError(f"{option!r} is not a string")
    if "\0" in option:
        raise InvalidArgumentError(f"{option!r} contains a NUL byte")
    try:
        os.fsencode(option)
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{option!r} cannot be encoded as a file name") from None
    return option
