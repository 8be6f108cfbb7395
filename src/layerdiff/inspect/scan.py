"""Reading layers for ``inspect``: each blob is streamed once, parsed, never applied.

The bytes take the applier's path (stream processors or compression detection, the diffID
hashed on a producer thread, Go's tar header rules) and stop at the headers: entry data
is skipped. An image's blobs are checked as ``unpack`` checks them: blob digest and size
while streaming, then the diffID against the config's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Mapping
from typing import Protocol

from layerdiff.applier import layer_tar, open_source
from layerdiff.archive import tarstream
from layerdiff.archive.tarstream import TarHeader
from layerdiff.archive.whiteout import OPAQUE_MARKER, WHITEOUT_PREFIX, validate_whiteout_name
from layerdiff.compression import Readable
from layerdiff.diff import ApplyLimits, ApplyOptions
from layerdiff.errors import (
    LimitExceededError,
)
from layerdiff.image.platforms import Platform, default_platform
from layerdiff.image.source import ImageSource
from layerdiff.image.verify import check_diff_id, layer_blob
from layerdiff.inspect.flatten import Flattener
from layerdiff.inspect.report import Entry, ImageReport, LayerReport
from layerdiff.processors import ProcessorRegistry

Source = str | os.PathLike[str] | Readable

_KINDS = {
    tarstream.REG: "file",
    tarstream.DIR: "dir",
    tarstream.SYMLINK: "symlink",
    tarstream.LINK: "hardlink",
    tarstream.CHAR: "char",
    tarstream.BLOCKDEV: "block",
    tarstream.FIFO: "fifo",
}
_CHUNK = 1 << 20


class EntryCounter(Protocol):
    """Where the scan counts entries as it goes (a progress meter)."""

    entries: int


class _Counts:
    entries = 0


def inspect_layer(
    source: Source,
    *,
    name: str | None = None,
    media_type: str | None = None,
    processors: ProcessorRegistry | None = None,
    payloads: Mapping[str, bytes] | None = None,
    limits: ApplyLimits | None = None,
    counter: EntryCounter | None = None,
) -> LayerReport:
    """What the layer read from ``source`` (a path or anything with ``read``) does.

    Alone, a layer's entries are ``changed`` (added or modified: that needs the layers
    below), ``deleted`` (whiteouts) or ``opaque``. ``media_type`` picks the stream
    processors as for ``apply_layer``; without it the compression is detected. ``name``
    names the source in the report (default: the path, or ``-``).
    """
    with contextlib.ExitStack() as stack:
        blob = _Blob(open_source(source, stack), hashing=True)
        scanner = _Scanner(None, 0, counter or _Counts())
        diff_id, size = _scan(
            blob, scanner, media_type, processors=processors, payloads=payloads, limits=limits
        )
    if name is None:
        name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "-"
    return LayerReport(name, media_type, blob.digest(), blob.size, diff_id, size, scanner.entries)


def inspect_image(
    source: ImageSource,
    *,
    platform: Platform | None = None,
    processors: ProcessorRegistry | None = None,
    limits: ApplyLimits | None = None,
    counter: EntryCounter | None = None,
) -> ImageReport:
    """Every layer of ``source``'s image for ``platform`` (default: this machine's), each
    entry ``added`` or ``modified`` against the layers below, and the flattened result:
    its files and the bytes that later layers overwrite or delete."""
    image = source.resolve(platform or default_platform(), strict=platform is not None)
    flat = Flattener()
    reports = []
    for layer in image.layers:
        scanner = _Scanner(flat, layer.index, counter or _Counts())
        with layer_blob(source, layer) as reader:
            blob = _Blob(reader, hashing=layer.digest is None)
            diff_id, size = _scan(
                blob, scanner, layer.media_type, processors=processors, payloads=None,
                limits=limits,
            )
        check_diff_id(layer, diff_id)
        reports.append(LayerReport(
            layer.describe(), layer.media_type, layer.digest or blob.digest(), blob.size,
            diff_id, size, scanner.entries, index=layer.index,
        ))
    for report in reports:
        report.wasted = flat.wasted.get(report.index or 0, 0)
    return ImageReport(
        source.name, image.config_digest, image.manifest_digest, str(image.platform), reports,
        list(flat.files()), flat.count(), flat.waste,
    )


class _Scanner:
    """Turns tar headers into ``Entry``s; with a ``Flattener``, against the layers below."""

    def __init__(self, flat: Flattener | None, layer: int, counter: EntryCounter) -> None:
        self._flat = flat
        self._layer = layer
        self._counter = counter
        self.entries: list[Entry] = []

    def add(self, hdr: TarHeader) -> None:
        if hdr.typeflag == tarstream.PAX_GLOBAL:
            return  # not an entry: the applier skips it too
        self._counter.entries += 1
        parts = _clean(hdr.name)
        base = parts[-1] if parts else ""
        flat, layer = self._flat, self._layer
        if base.startswith(WHITEOUT_PREFIX):
            validate_whiteout_name(base)
            if base == OPAQUE_MARKER:
                directory = parts[:-1]
                hidden = None if flat is None else flat.hide(layer, directory)
                self.entries.append(Entry(_path(directory), "opaque", 0, "opaque", hidden))
                return
            target = (*parts[:-1], base[len(WHITEOUT_PREFIX) :])
            deleted = None if flat is None else flat.delete(layer, target)
            self.entries.append(Entry(_path(target), "whiteout", 0, "deleted", deleted))
            return
        kind = _KINDS.get(hdr.typeflag, "other")
        size = hdr.size if kind == "file" else 0
        if flat is None:
            self.entries.append(Entry(_path(parts), kind, size, "changed", None))
            return
        link = hdr.linkname if kind == "symlink" else ""
        earlier, removed = flat.put(layer, parts, kind, size, link)
        change = "modified" if earlier else "added"
        self.entries.append(Entry(_path(parts), kind, size, change, removed))


def _scan(
    blob: Readable,
    scanner: _Scanner,
    media_type: str | None,
    *,
    processors: ProcessorRegistry | None,
    payloads: Mapping[str, bytes] | None,
    limits: ApplyLimits | None,
) -> tuple[str, int]:
    """Feed the layer's headers to ``scanner``; returns the diffID and the tar's size."""
    limits = limits or ApplyLimits()
    options = ApplyOptions(processors=processors, payloads=payloads or {}, limits=limits)
    with layer_tar(blob, media_type, options) as layer:
        while (hdr := layer.tar.next()) is not None:
            scanner.add(hdr)
            if limits.max_entries is not None and len(scanner.entries) > limits.max_entries:
                raise LimitExceededError(f"the layer has more than {limits.max_entries} entries")
        desc = layer.finish()
    return desc.digest, desc.size


class _Blob:
    """The blob as read: its size, and its digest if asked."""

    def __init__(self, raw: Readable, *, hashing: bool) -> None:
        self._raw = raw
        self._hash = hashlib.sha256() if hashing else None
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)  # its I/O errors become SourceError in layer_tar
        self.size += len(data)
        if self._hash is not None:
            self._hash.update(data)
        return data

    def digest(self) -> str:
        assert self._hash is not None
        return "sha256:" + self._hash.hexdigest()


def _clean(name: str) -> tuple[str, ...]:
    """A tar name's components, resolved as if the root were ``/``: never above it."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return tuple(parts)


def _path(parts: tuple[str, ...]) -> str:
    return "/" + "/".join(parts)
