"""What ``layerdiff inspect`` finds in a layer or an image, and its JSON form.

The JSON schema is documented in docs/cli.md; ``SCHEMA_VERSION`` changes when a field
changes meaning or goes away (new fields may appear without it).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from layerdiff.inspect.flatten import Waste

SCHEMA_VERSION = 1

_T = TypeVar("_T")

#: What an entry does. ``changed``: added or modified, unknown which (a layer alone).
CHANGES = ("added", "modified", "changed", "deleted", "opaque")


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a layer.

    ``kind`` is the tar type (``file dir symlink hardlink char block fifo``), or
    ``whiteout`` (``path`` is what it deletes) or ``opaque`` (``path`` is the directory).
    ``size`` is a regular file's data size. ``removed``: bytes of files of earlier layers
    the entry replaced, deleted or hid; ``None`` for a layer inspected alone.
    """

    path: str
    kind: str
    size: int
    change: str
    removed: int | None


@dataclass
class LayerReport:
    """A layer's entries and what identifies it.

    ``digest`` and ``blob_size`` are the blob's (as read), ``diff_id`` and ``size`` its
    uncompressed stream's. In an image, ``index`` is its position (0 at the bottom) and
    ``wasted`` the bytes of its files that later layers remove.
    """

    source: str
    media_type: str | None
    digest: str
    blob_size: int
    diff_id: str
    size: int
    entries: list[Entry]
    index: int | None = None
    wasted: int | None = None

    def changes(self) -> dict[str, int]:
        """How many entries of each change (every name of ``CHANGES``, maybe 0)."""
        counted = Counter(e.change for e in self.entries)
        return {change: counted[change] for change in CHANGES}

    def kinds(self) -> dict[str, int]:
        """How many entries of each kind present."""
        return dict(sorted(Counter(e.kind for e in self.entries).items()))

    @property
    def file_bytes(self) -> int:
        """The data bytes of the layer's regular files."""
        return sum(e.size for e in self.entries if e.kind == "file")

    @property
    def removed(self) -> int | None:
        """Bytes of earlier layers' files this layer removes (``None``: layer alone)."""
        if self.index is None:
            return None
        return sum(e.removed or 0 for e in self.entries)

    def files(self) -> list[tuple[str, int]]:
        """(path, size) of every regular file."""
        return [(e.path, e.size) for e in self.entries if e.kind == "file"]

    def to_json(self, top: int) -> dict[str, Any]:
        """The layer as JSON; ``top`` bounds the largest-files and directory lists
        (0: no bound)."""
        files = self.files()
        return {
            "index": self.index,
            "source": self.source,
            "media_type": self.media_type,
            "digest": self.digest,
            "blob_size": self.blob_size,
            "diff_id": self.diff_id,
            "size": self.size,
            "entries": len(self.entries),
            "changes": self.changes(),
            "kinds": self.kinds(),
            "file_bytes": self.file_bytes,
            "removed_bytes": self.removed,
            "wasted_bytes": self.wasted,
            "deleted": [_removal(e) for e in self.entries if e.kind == "whiteout"],
            "opaque": [_removal(e) for e in self.entries if e.kind == "opaque"],
            "largest": [{"path": p, "size": s} for p, s in largest(files, top)],
            "directories": [
                {"path": p, "bytes": b, "files": n} for p, b, n in directories(files, top)
            ],
        }


@dataclass
class ImageReport:
    """An image's layers and its flattened result.

    ``files`` are the flattened tree's regular files, ``paths`` how many paths it holds;
    ``waste`` lists every file of a layer that a later entry removed.
    """

    source: str
    config: str
    manifest: str | None
    platform: str
    layers: list[LayerReport]
    files: list[tuple[str, int]]
    paths: int
    waste: list[Waste] = field(default_factory=list)

    @property
    def layer_bytes(self) -> int:
        """The file bytes all layers carry."""
        return sum(layer.file_bytes for layer in self.layers)

    @property
    def file_bytes(self) -> int:
        """The file bytes of the flattened tree."""
        return sum(size for _, size in self.files)

    @property
    def wasted(self) -> int:
        """Bytes the layers carry that the flattened tree does not have."""
        return sum(w.size for w in self.waste)

    def biggest_waste(self, top: int) -> list[Waste]:
        """The ``top`` largest removed files (0: all), largest first."""
        return _top(self.waste, top, key=lambda w: w.size)

    def to_json(self, top: int) -> dict[str, Any]:
        """The image as JSON; ``top`` bounds each list (0: no bound)."""
        return {
            "schema": SCHEMA_VERSION,
            "kind": "image",
            "source": self.source,
            "config": self.config,
            "manifest": self.manifest,
            "platform": self.platform,
            "layers": [layer.to_json(top) for layer in self.layers],
            "flattened": {
                "paths": self.paths,
                "files": len(self.files),
                "file_bytes": self.file_bytes,
                "layer_bytes": self.layer_bytes,
                "wasted_bytes": self.wasted,
                "largest": [{"path": p, "size": s} for p, s in largest(self.files, top)],
                "directories": [
                    {"path": p, "bytes": b, "files": n}
                    for p, b, n in directories(self.files, top)
                ],
                "wasted": [
                    {"path": w.path, "size": w.size, "layer": w.layer, "by": w.by, "how": w.how}
                    for w in self.biggest_waste(top)
                ],
            },
        }


def layer_json(report: LayerReport, top: int) -> dict[str, Any]:
    """A layer inspected alone, as the top-level JSON object."""
    return {"schema": SCHEMA_VERSION, "kind": "layer", **report.to_json(top)}


def largest(files: Iterable[tuple[str, int]], top: int) -> list[tuple[str, int]]:
    """The ``top`` largest files (0: all), largest first, then by path."""
    return _top(files, top, key=lambda f: (f[1], _reverse(f[0])))


def directories(files: Iterable[tuple[str, int]], top: int) -> list[tuple[str, int, int]]:
    """Per-directory totals of ``files`` (everything below, recursively): the ``top``
    directories (0: all) with the most bytes, as (path, bytes, files)."""
    totals: dict[str, list[int]] = {}
    for path, size in files:
        end = path.rfind("/")
        while end >= 0:
            parent = path[:end] or "/"
            total = totals.setdefault(parent, [0, 0])
            total[0] += size
            total[1] += 1
            end = path.rfind("/", 0, end) if end else -1
    rows = [(p, b, n) for p, (b, n) in totals.items()]
    return _top(rows, top, key=lambda r: (r[1], _reverse(r[0])))


def _removal(entry: Entry) -> dict[str, Any]:
    return {"path": entry.path, "bytes": entry.removed}


def _reverse(path: str) -> tuple[int, ...]:
    # Sorting key that puts "a" before "b" when sorting largest first.
    return tuple(-ord(c) for c in path)


def _top(items: Iterable[_T], top: int, key: Callable[[_T], Any]) -> list[_T]:
    if top > 0:
        return heapq.nlargest(top, items, key=key)
    return sorted(items, key=key, reverse=True)
