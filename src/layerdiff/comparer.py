"""Computing a layer from two trees: the library call behind ``layerdiff diff``.

Bytes flow one way, in one pass: the changes are found (a double walk of both trees,
or the upperdir alone for an overlay), turned into tar entries, and the tar stream is
hashed (the diffID), compressed, hashed again (the blob digest) and written out. No
copy of the layer is kept anywhere. The walk, the reads and the tar headers run on the
calling thread; hashing, compression and writing on a second one (hashlib, ISA-L and
libzstd release the GIL), so that two cores share the work.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import stat
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from layerdiff.archive.changes import Tree, double_walk, layer_xattr
from layerdiff.archive.layerwrite import LayerWriter
from layerdiff.archive.overlaychanges import overlay_walk, overlay_xattr_names
from layerdiff.archive.tarwrite import TarWriter
from layerdiff.compression import Compression, StreamCompressor
from layerdiff.diff import DiffOptions
from layerdiff.errors import InvalidArgumentError, NotFoundError, TargetError
from layerdiff.oci import (
    LABEL_UNCOMPRESSED,
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
    Descriptor,
)

PathArg = str | os.PathLike[str]


class Writable(Protocol):
    """Where a layer goes: anything with ``write(bytes)`` (a file, a socket, a hasher)."""

    def write(self, data: bytes, /) -> object:
        """Take the next bytes of the layer."""

MEDIA_TYPES = {
    Compression.NONE: MEDIA_TYPE_LAYER,
    Compression.GZIP: MEDIA_TYPE_LAYER_GZIP,
    Compression.ZSTD: MEDIA_TYPE_LAYER_ZSTD,
}

#: Pieces handed to the compressing thread are about this large; at most this many wait.
_CHUNK = 1 << 20
_QUEUE_CHUNKS = 8
_JOIN_SECONDS = 5.0

log = logging.getLogger("layerdiff.comparer")


def diff_trees(
    lower: PathArg | Sequence[PathArg] | None,
    upper: PathArg,
    out: Writable,
    options: DiffOptions | None = None,
) -> Descriptor:
    """Write to ``out`` the layer that turns ``lower`` into ``upper``; return its descriptor.

    ``lower`` is a directory (``None``: an empty tree), or with ``upper_overlay`` the
    overlay's lowerdirs, nearest first. The descriptor has the blob's media type, digest
    and size, and the uncompressed digest (the diffID) in the ``containerd.io/uncompressed``
    annotation. Raises a ``LayerdiffError`` subclass on any failure.
    """
    options = options or DiffOptions()
    compressor = StreamCompressor(options.compression, options.level)
    lowers = _lower_dirs(lower, options)
    for directory, role in [(upper, "upper"), *((d, "lower") for d in lowers)]:
        _check_dir(directory, role)
    if options.upper_overlay:
        names = overlay_xattr_names(options.userxattr)
        upper_tree = Tree(upper, names)
        changes = overlay_walk(
            [Tree(d, names) for d in lowers], upper_tree, userxattr=options.userxattr
        )
    else:
        upper_tree = Tree(upper, layer_xattr)
        changes = double_walk(Tree(lowers[0]) if lowers else None, upper_tree)
    with _LayerSink(out, compressor) as sink:
        writer = LayerWriter(
            upper_tree, TarWriter(sink.write), source_date_epoch=options.source_date_epoch
        )
        writer.write_all(changes)
    return Descriptor(
        MEDIA_TYPES[options.compression],
        "sha256:" + sink.blob_hash.hexdigest(),
        sink.blob_size,
        {LABEL_UNCOMPRESSED: "sha256:" + sink.tar_hash.hexdigest()},
    )


def _lower_dirs(lower: PathArg | Sequence[PathArg] | None, options: DiffOptions) -> list[str]:
    if lower is None:
        dirs = []
    elif isinstance(lower, (str, os.PathLike)):
        dirs = [os.fspath(lower)]
    else:
        dirs = [os.fspath(d) for d in lower]
    if not options.upper_overlay:
        if len(dirs) > 1:
            raise InvalidArgumentError("several lower directories need an overlay upperdir")
        if options.userxattr:
            raise InvalidArgumentError("userxattr applies to an overlay upperdir only")
    return dirs


def _check_dir(path: PathArg, role: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFoundError(f"{role} directory {os.fspath(path)!r} does not exist") from None
    except OSError as err:
        raise NotFoundError(f"{role} directory {os.fspath(path)!r}: {err.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgumentError(f"{role} {os.fspath(path)!r} is not a directory")


class _LayerSink:
    """Hashes, compresses, hashes again and writes a tar stream, on its own thread.

    ``write`` gathers small pieces (tar headers) into chunks of about 1 MiB; a bounded
    queue carries them to the thread, so memory does not grow with the layer. If writing
    the output fails, the next ``write`` raises; if the producer fails, the thread stops
    without finishing the compressed stream.
    """

    def __init__(self, out: Writable, compressor: StreamCompressor) -> None:
        self._out = out
        self._compressor = compressor
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUE_CHUNKS)
        self._pending = bytearray()
        self._error: BaseException | None = None
        self._abandon = False
        self._thread = threading.Thread(target=self._run, name="layerdiff-compress", daemon=True)
        self.tar_hash = hashlib.sha256()
        self.blob_hash = hashlib.sha256()
        self.blob_size = 0

    def __enter__(self) -> _LayerSink:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                with contextlib.suppress(TargetError):
                    self._put(bytes(self._pending))  # the error, if any, is raised below
            else:
                self._abandon = True
        finally:
            # Whatever ``_put`` raised (the thread's error: a cancel, a deadline), the
            # thread waits for the end marker: without it, it would wait forever.
            self._queue.put(None)
            self._thread.join(None if exc is None else _JOIN_SECONDS)
        if self._thread.is_alive():
            log.warning("output still blocked; leaving the compressing thread behind")
        if exc is None:
            self._raise_error()

    def write(self, data: bytes) -> None:
        """Take the next piece of the tar stream."""
        if len(data) >= _CHUNK:
            if self._pending:
                self._put(bytes(self._pending))
                self._pending.clear()
            self._put(data)
            return
        self._pending += data
        if len(self._pending) >= _CHUNK:
            self._put(bytes(self._pending))
            self._pending.clear()

    def _put(self, chunk: bytes) -> None:
        self._raise_error()
        self._queue.put(chunk)

    def _raise_error(self) -> None:
        err = self._error
        if err is None:
            return
        if isinstance(err, OSError):
            raise TargetError(f"cannot write the layer: {err.strerror or err}") from None
        raise err

    def _run(self) -> None:
        ended = False
        try:
            while (chunk := self._queue.get()) is not None:
                self.tar_hash.update(chunk)
                self._emit(self._compressor.compress(chunk))
            ended = True
            if not self._abandon:
                self._emit(self._compressor.flush())
                flush = getattr(self._out, "flush", None)
                if flush is not None:
                    flush()
        except BaseException as err:  # handed to the producer, raised there
            # Without its traceback: that holds this frame, hence the sink, the
            # compressor and their buffers, in a cycle only the garbage collector frees.
            self._error = err.with_traceback(None)
            # Keep taking chunks until the end marker, so that the producer never blocks;
            # not past it: a failure of the final write (a deadline, a full disk) comes
            # after the marker, and waiting for another would hang the producer's join.
            while not ended and self._queue.get() is not None:
                pass

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob_hash.update(data)
            self.blob_size += len(data)
            self._out.write(data)
