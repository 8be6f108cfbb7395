"""Making renames and new files survive a crash."""

from __future__ import annotations

import os


def sync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory: its entries (a rename, a new file) reach the disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
