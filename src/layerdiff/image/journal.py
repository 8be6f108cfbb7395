"""The unpack journal: which image an unpack is of, and how many layers are done.

Written atomically (a temporary file renamed over the old one, both synced) after the
layers it records were synced, so that after a crash or a SIGKILL it never claims more
than the disk holds. An unpack run again reads it to skip what is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
from dataclasses import asdict, dataclass, field

from layerdiff.durable import sync_dir
from layerdiff.errors import FailedPreconditionError, TargetError

_VERSION = 1
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class Journal:
    """The state of one unpack into one destination."""

    image: str  # the config digest: the same image in any form (layout, archive, registry)
    platform: str
    mode: str
    diff_ids: list[str]
    source: str = ""
    done: int = 0  # layers completed, bottom first
    applying: int | None = None  # flat mode: the layer whose application may be partial
    version: int = field(default=_VERSION)

    def same_unpack(self, other: Journal) -> bool:
        """Whether ``other`` describes the same image, platform and mode."""
        return (self.image, self.platform, self.mode, self.diff_ids) == (
            other.image, other.platform, other.mode, other.diff_ids
        )


def load(path: str) -> Journal | None:
    """The journal at ``path``, ``None`` if there is none."""
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read(1 << 20))
        journal = Journal(**raw)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:
        raise FailedPreconditionError(
            f"unreadable unpack journal {path} ({err}): start over to unpack again"
        ) from None
    if not _well_typed(journal):
        raise FailedPreconditionError(
            f"unpack journal {path} is malformed: start over to unpack again"
        )
    if journal.version != _VERSION:
        raise FailedPreconditionError(
            f"unpack journal {path} has unknown version {journal.version}"
        )
    return journal


def _well_typed(journal: Journal) -> bool:
    texts = (journal.image, journal.platform, journal.mode, journal.source)
    return (
        all(isinstance(t, str) for t in texts)
        and isinstance(journal.diff_ids, list)
        and all(isinstance(d, str) for d in journal.diff_ids)
        and isinstance(journal.done, int)
        and (journal.applying is None or isinstance(journal.applying, int))
        and isinstance(journal.version, int)
    )


def save(path: str, journal: Journal) -> None:
    """Replace the journal at ``path`` atomically and durably."""
    tmp = f"{path}.tmp"
    data = json.dumps(asdict(journal), sort_keys=True).encode()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        sync_dir(os.path.dirname(path) or ".")
    except OSError as err:
        raise TargetError(f"cannot write unpack journal {path}: {err.strerror}") from None


def remove(path: str) -> None:
    """Delete the journal at ``path`` if there is one."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def sync_filesystem(path: str) -> None:
    """syncfs(2) the file system holding ``path``: a layer's files reach the disk before
    the journal says the layer is done."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise TargetError(f"cannot sync {path}: {os.strerror(err)}")
    finally:
        os.close(fd)
