"""Named files of an image on disk or in a tar: the ``Files`` protocol, and a directory.

Every name comes from the image itself (``index.json``, ``manifest.json``) and is
hostile: ``clean_name`` accepts relative names without ``..`` only, and a directory is
read one component at a time with ``O_NOFOLLOW``, so neither a name nor a symlink inside
the image (a symlinked ``blobs/``) leads outside it.
"""

from __future__ import annotations

import os
import stat
from typing import Protocol

from layerdiff.errors import InvalidArgumentError, LimitExceededError, NotFoundError, SourceError
from layerdiff.image.source import BlobStream


class Files(Protocol):
    """Regular files by relative name."""

    @property
    def name(self) -> str:
        """Where they are, as the user named it."""

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a regular file."""

    def size(self, name: str) -> int:
        """The size of file ``name``; ``NotFoundError`` if there is none."""

    def open(self, name: str) -> BlobStream:
        """A stream of file ``name``; ``NotFoundError`` if there is none."""

    def close(self) -> None:
        """Release what is open."""


def clean_name(name: str) -> str | None:
    """``name`` without ``./`` prefixes or a trailing ``/``; ``None`` if it is absolute,
    empty or climbs with ``..``: such a name never names a file of the image."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or name.startswith("/") or ".." in parts:
        return None
    return "/".join(parts)


def read_file(files: Files, name: str, limit: int) -> bytes:
    """The whole file ``name``, refused (``LimitExceededError``) past ``limit`` bytes."""
    size = files.size(name)
    if size > limit:
        raise LimitExceededError(f"{files.name}: {name} is {size} bytes, more than {limit}")
    stream = files.open(name)
    chunks: list[bytes] = []
    got = 0
    try:
        while got < size and (chunk := stream.read(size - got)):
            chunks.append(chunk)
            got += len(chunk)
    finally:
        stream.close()
    data = b"".join(chunks)
    if len(data) != size:
        raise SourceError(f"{files.name}: {name} ended after {len(data)} of {size} bytes")
    return data


class DirFiles:
    """The files of a directory, opened without following any symlink inside it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = os.fspath(path)
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFoundError(f"image directory {self.name!r} does not exist") from None
        except NotADirectoryError:
            raise InvalidArgumentError(f"{self.name!r} is not a directory") from None
        except OSError as err:
            raise SourceError(f"cannot open {self.name!r}: {err.strerror}") from None

    def _open_fd(self, name: str) -> int:
        clean = clean_name(name)
        if clean is None:
            raise InvalidArgumentError(f"{self.name}: invalid file name {name!r}")
        *dirs, base = clean.split("/")
        fd = self._fd
        try:
            for part in dirs:
                try:
                    nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                  dir_fd=fd)
                except NotADirectoryError:
                    # O_NOFOLLOW with O_DIRECTORY reports a symlink as "not a directory".
                    if stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode):
                        raise SourceError(
                            f"{self.name}: cannot open {clean}: {part} is a symlink"
                        ) from None
                    raise
                if fd != self._fd:
                    os.close(fd)
                fd = nxt
            file_fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                              dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{self.name}: {clean} does not exist") from None
        except OSError as err:  # ELOOP: a symlink on the way
            raise SourceError(f"{self.name}: cannot open {clean}: {err.strerror}") from None
        finally:
            if fd != self._fd:
                os.close(fd)
        if not stat.S_ISREG(os.fstat(file_fd).st_mode):
            os.close(file_fd)
            raise SourceError(f"{self.name}: {clean} is not a regular file")
        return file_fd

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a regular file reached without symlinks."""
        try:
            os.close(self._open_fd(name))
        except NotFoundError:
            return False
        return True

    def size(self, name: str) -> int:
        """The size of file ``name``."""
        fd = self._open_fd(name)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def open(self, name: str) -> BlobStream:
        """File ``name``, open for reading."""
        fd = self._open_fd(name)
        os.set_blocking(fd, True)
        return open(fd, "rb", buffering=0)

    def close(self) -> None:
        """Close the directory."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
