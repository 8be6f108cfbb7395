"""The regular files of an uncompressed tar archive, read in place.

One pass over the headers records where each member's data starts; a member is then read
with ``pread`` at its offset, so an archive of gigabytes is never copied to disk and
several members can be streamed at once. Names are cleaned (``./`` prefixes dropped);
absolute names, names with ``..``, links, devices and sparse members are not indexed, so
they are never taken for a file of the image. Later members replace earlier ones of the
same name, as extraction would.
"""

from __future__ import annotations

import os
import tarfile

from layerdiff.errors import (
    CorruptLayerError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    SourceError,
    UnsupportedError,
)
from layerdiff.image.files import clean_name
from layerdiff.image.source import BlobStream

#: Members indexed at most: image archives hold a few files per layer.
MAX_MEMBERS = 1_000_000
_COMPRESSED = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2",
               b"\xfd7zXZ\x00": "xz"}


class _Slice:
    """``size`` bytes of a file from ``offset`` on, read with ``pread``."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self._fd, self._pos, self._left = fd, offset, size

    def read(self, size: int = -1, /) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        if want <= 0:
            return b""
        data = os.pread(self._fd, want, self._pos)
        if not data:
            raise SourceError(f"the archive ends {self._left} bytes into a member")
        self._pos += len(data)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._left = 0


class TarFiles:
    """The regular files of the tar archive at ``path`` (a ``Files``)."""

    def __init__(self, path: str | os.PathLike[str], max_members: int = MAX_MEMBERS) -> None:
        self.name = os.fspath(path)
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"image archive {self.name!r} does not exist") from None
        except IsADirectoryError:
            raise InvalidArgumentError(f"image archive {self.name!r} is a directory") from None
        except OSError as err:
            raise SourceError(f"cannot open {self.name!r}: {err.strerror}") from None
        try:
            self._members = self._index(max_members)
        except BaseException:
            self.close()
            raise

    def _index(self, max_members: int) -> dict[str, tuple[int, int]]:
        head = os.pread(self._fd, 8, 0)
        for magic, kind in _COMPRESSED.items():
            if head.startswith(magic):
                raise UnsupportedError(
                    f"{self.name} is {kind}-compressed: decompress it first "
                    "(image archives are read in place)"
                )
        members: dict[str, tuple[int, int]] = {}
        # tarfile parses the headers only; data is never read or extracted through it.
        with open(self._fd, "rb", closefd=False) as raw:
            try:
                archive = tarfile.open(fileobj=raw, mode="r:")  # noqa: SIM115 - raw is closed
                for count, info in enumerate(archive, 1):
                    if count > max_members:
                        raise LimitExceededError(
                            f"{self.name} has more than {max_members} members"
                        )
                    name = clean_name(info.name)
                    if name is None:
                        continue
                    if info.isreg() and not info.issparse():
                        members[name] = (info.offset_data, info.size)
                    else:
                        members.pop(name, None)
            except (tarfile.TarError, EOFError) as err:
                raise CorruptLayerError(f"{self.name} is not a valid tar archive: {err}") from None
        return members

    def names(self) -> list[str]:
        """The cleaned names of the regular files, in archive order of their last member."""
        return list(self._members)

    def exists(self, name: str) -> bool:
        """Whether the archive has a regular file ``name``."""
        clean = clean_name(name)
        return clean is not None and clean in self._members

    def _member(self, name: str) -> tuple[int, int]:
        clean = clean_name(name)
        if clean is None or clean not in self._members:
            raise NotFoundError(f"{self.name}: no file {name!r} in the archive")
        return self._members[clean]

    def size(self, name: str) -> int:
        """The size of member ``name``."""
        return self._member(name)[1]

    def open(self, name: str) -> BlobStream:
        """The data of member ``name``."""
        offset, size = self._member(name)
        return _Slice(self._fd, offset, size)

    def close(self) -> None:
        """Close the archive."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
