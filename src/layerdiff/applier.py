"""Applying one layer blob onto a directory: the library call behind ``layerdiff apply``.

Bytes flow one way: the source is read once, decompressed on a producer thread, hashed
on another, parsed and written by the applier. The returned descriptor names what was
applied: the uncompressed stream's digest (the diffID, trailing bytes included) and size.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from layerdiff.archive.apply import Applier
from layerdiff.archive.fsroot import FsRoot
from layerdiff.archive.tarstream import ChunkReader, TarReader
from layerdiff.compression import Readable, decompressed_chunks
from layerdiff.diff import ApplyOptions
from layerdiff.errors import (
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    SourceError,
    TargetError,
)
from layerdiff.oci import MEDIA_TYPE_LAYER, Descriptor
from layerdiff.pipeline import Prefetcher, ThreadedHash
from layerdiff.processors import ProcessorChain

Source = str | os.PathLike[str] | BinaryIO | Readable


class _ReadErrors:
    """Reports the source's own I/O errors as ``SourceError`` (not the target's fault)."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._raw.read(size)
        except OSError as err:
            raise SourceError(f"cannot read the layer: {err.strerror or err}") from None


class _Digester:
    """Counts and hashes every chunk that passes through it, up to ``limit`` bytes."""

    def __init__(
        self, chunks: Iterable[bytes], limit: int | None, hasher: ThreadedHash
    ) -> None:
        self._chunks = chunks
        self._limit = limit
        self.hash = hasher
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.hash.update(chunk)
            self.size += len(chunk)
            if self._limit is not None and self.size > self._limit:
                raise LimitExceededError(
                    f"the layer is larger than the limit of {self._limit} uncompressed bytes"
                )
            yield chunk


def apply_layer(
    source: Source,
    dest: str | os.PathLike[str],
    options: ApplyOptions | None = None,
    *,
    media_type: str | None = None,
) -> Descriptor:
    """Apply the layer read from ``source`` (a path or anything with ``read``) onto ``dest``.

    ``media_type`` is the blob's: it chooses the stream processors that turn the blob into
    plain tar (``options.processors``, see ``layerdiff.processors``). Without it the
    compression (gzip, zstd or none) is detected from the first bytes, as for docker's
    plain ``tar`` type. Raises a ``LayerdiffError`` subclass on any failure; see
    ``layerdiff.errors``.
    """
    options = options or ApplyOptions()
    _check_dest(dest)
    with contextlib.ExitStack() as stack:
        layer = stack.enter_context(
            layer_tar(open_source(source, stack), media_type, options)
        )
        try:
            root = FsRoot(dest)
        except OSError as err:
            raise TargetError(f"cannot open target {os.fspath(dest)!r}: {err.strerror}") from None
        stack.callback(root.close)
        Applier(root, options).apply(layer.tar)
        return layer.finish()


@dataclass
class LayerTar:
    """A layer's tar stream being read: its entries, and its digest once finished."""

    tar: TarReader
    _chunks: ChunkReader
    _digester: _Digester

    def finish(self) -> Descriptor:
        """Read what follows the end of the archive (the diffID covers it too) and
        return the descriptor of the whole uncompressed stream."""
        self._chunks.drain()
        digest = "sha256:" + self._digester.hash.hexdigest()
        return Descriptor(MEDIA_TYPE_LAYER, digest, self._digester.size)


@contextlib.contextmanager
def layer_tar(
    raw: Readable, media_type: str | None, options: ApplyOptions
) -> Iterator[LayerTar]:
    """The tar stream of the layer read from ``raw``: through the stream processors
    ``media_type`` picks (or the compression detected from the first bytes), decoded on a
    second thread and hashed on a third, within ``options.limits``; ``options.cancel``
    stops the processors at once."""
    with contextlib.ExitStack() as stack:
        source = _ReadErrors(raw)
        plain: Iterable[bytes]
        chain = None
        if media_type is None:
            plain = decompressed_chunks(source)
        else:
            chain = stack.enter_context(
                ProcessorChain(media_type, source, options.processors, options.payloads)
            )
            plain = chain
        hasher = ThreadedHash()
        # Closed after the prefetcher (callbacks run last first): its thread may still
        # be handing chunks over until then.
        stack.callback(hasher.close)
        digester = _Digester(plain, options.limits.max_layer_bytes, hasher)
        prefetched = stack.enter_context(Prefetcher(iter(digester)))
        if chain is not None:
            # Stop the processors before the prefetcher: its thread may be blocked
            # reading one of them, and only their end unblocks it.
            stack.callback(chain.close)
            if options.cancel is not None:
                # A processor that stops reading would block the prefetcher's read.
                stack.callback(options.cancel.add_callback(chain.close))
        chunks = ChunkReader(iter(prefetched))
        yield LayerTar(TarReader(chunks, options.limits.max_header_bytes), chunks, digester)


def _check_dest(dest: str | os.PathLike[str]) -> None:
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        raise NotFoundError(f"target directory {os.fspath(dest)!r} does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgumentError(f"target {os.fspath(dest)!r} is not a directory")


def open_source(source: Source, stack: contextlib.ExitStack) -> Readable:
    """``source`` itself, or the file it names opened for reading (closed by ``stack``)."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    try:
        return stack.enter_context(open(source, "rb"))
    except FileNotFoundError:
        raise NotFoundError(f"layer {os.fspath(source)!r} does not exist") from None
    except IsADirectoryError:
        raise InvalidArgumentError(f"layer {os.fspath(source)!r} is a directory") from None
    except OSError as err:
        raise SourceError(f"cannot open layer {os.fspath(source)!r}: {err.strerror}") from None
