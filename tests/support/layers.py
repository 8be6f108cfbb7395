"""Building small layers for tests, one entry per tuple, with Python's tar writer.

``layer(("dir", "etc/"), ("file", "etc/motd", {"data": b"hi"}))``: each entry is a kind
(``dir file symlink hardlink char block fifo``), a name and optional TarInfo attributes
(``data`` for file contents, ``pax_headers`` for PAX records, ``mtime``...). Times
default to a fixed instant so that layers are byte-for-byte reproducible.
"""

from __future__ import annotations

import gzip as _gzip
import io
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backports import zstd as _zstd

from layerdiff import ApplyOptions, WhiteoutMode, apply_layer

Entry = tuple[str, str] | tuple[str, str, dict[str, Any]]

_TYPES = {
    "dir": tarfile.DIRTYPE,
    "file": tarfile.REGTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
FIXED_MTIME = 1_600_000_000.5


def layer(*entries: Entry, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar layer of ``entries``, in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for entry in entries:
            kind, name = entry[0], entry[1]
            attrs = dict(entry[2]) if len(entry) > 2 else {}
            info = tarfile.TarInfo(name)
            info.type = _TYPES[kind]
            info.mtime = attrs.pop("mtime", FIXED_MTIME)
            info.mode = attrs.pop("mode", 0o755 if kind == "dir" else 0o644)
            data: bytes = attrs.pop("data", b"")
            for key, value in attrs.items():
                setattr(info, key, value)
            if kind == "file":
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return out.getvalue()


def gzip(data: bytes) -> bytes:
    """``data`` gzip-compressed, reproducibly (no time in the header)."""
    return _gzip.compress(data, mtime=0)


def zstd(data: bytes) -> bytes:
    """``data`` zstd-compressed."""
    return _zstd.compress(data)


def apply_overlay_stack(layers: Sequence[bytes], base: Path) -> list[Path]:
    """Apply ``layers`` as containerd's overlayfs snapshotter has them applied.

    The first layer goes naively into its own directory (the snapshotter hands it over
    as a bind mount); each next one into a fresh upperdir in overlay mode, with the
    earlier ones as its parents, nearest first. Returns the directories, bottom first.
    """
    uppers: list[Path] = []
    for i, blob in enumerate(layers):
        upper = base / f"upper{i}"
        upper.mkdir()
        options = ApplyOptions()
        if uppers:
            parents = tuple(str(u) for u in reversed(uppers))
            options = ApplyOptions(mode=WhiteoutMode.OVERLAY, parents=parents)
        apply_layer(io.BytesIO(blob), upper, options)
        uppers.append(upper)
    return uppers
