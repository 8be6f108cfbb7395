"""Detecting and undoing the compression of a layer stream.

Detection follows containerd's ``archive/compression``: gzip and zstd are recognised by
their magic bytes (zstd skippable frames included) and anything else is taken as plain
tar, except formats we can name for certain (xz, bzip2, lz4), which are refused with
their name rather than failing later as a puzzling "bad tar header".

Decoders run in-process (ISA-L for gzip, libzstd through ``backports.zstd`` for
zstd): no helper program is ever looked up through PATH, since a layer's target may be
the root file system whose PATH an attacker controls (moby CVE-2026-41567).
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Iterator
from typing import Protocol, cast

from backports.zstd import CompressionParameter, ZstdCompressor, ZstdDecompressor, ZstdError
from isal import isal_zlib

from layerdiff.errors import (
    CorruptLayerError,
    InvalidArgumentError,
    UnsupportedCompressionError,
)

#: Input is read in pieces this large; output pieces are bounded by the same size, so
#: that a tar bomb (a few bytes that inflate to gigabytes) never sits in memory at once.
CHUNK_SIZE = 1 << 20

_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE_MASK = 0xFFFFFFF0
_ZSTD_SKIPPABLE_START = 0x184D2A50

#: Formats containerd does not decode but whose magic is unambiguous.
_NAMED_UNSUPPORTED = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x04\x22\x4d\x18", "lz4"),
)

#: isal's stubs declare ``error`` loosely; it is zlib.error's twin, an Exception subclass.
_GzipError = cast(type[Exception], isal_zlib.error)

#: How many bytes detection needs to see.
DETECT_SIZE = 8


class Readable(Protocol):
    """Anything with a binary ``read``: a file, a socket file, a pipe."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""
        ...


class Compression(enum.Enum):
    """The compression of a layer stream."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


def detect(prefix: bytes) -> Compression:
    """Name the compression of a stream from its first bytes (at least 8 if there are)."""
    if prefix.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if prefix.startswith(_ZSTD_MAGIC):
        return Compression.ZSTD
    if len(prefix) >= 8:
        (magic,) = struct.unpack_from("<I", prefix)
        if magic & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE_START:
            return Compression.ZSTD
    for magic_bytes, name in _NAMED_UNSUPPORTED:
        if prefix.startswith(magic_bytes):
            raise UnsupportedCompressionError(
                f"unsupported layer compression: {name} (only gzip and zstd are supported)"
            )
    return Compression.NONE


def decompressed_chunks(raw: Readable, prefix: bytes = b"") -> Iterator[bytes]:
    """Yield the decompressed bytes of ``raw`` in pieces of at most ``CHUNK_SIZE``.

    ``prefix`` holds bytes already read from ``raw`` (for detection); they are used first.
    """
    while len(prefix) < DETECT_SIZE:
        more = raw.read(DETECT_SIZE - len(prefix))
        if not more:
            break
        prefix += more
    kind = detect(prefix)
    if kind is Compression.NONE:
        return _plain_chunks(raw, prefix)
    if kind is Compression.GZIP:
        return _gzip_chunks(raw, prefix)
    return _zstd_chunks(raw, prefix)


def _plain_chunks(raw: Readable, prefix: bytes) -> Iterator[bytes]:
    if prefix:
        yield prefix
    while chunk := raw.read(CHUNK_SIZE):
        yield chunk


def _gzip_chunks(raw: Readable, prefix: bytes) -> Iterator[bytes]:
    # Like Go's gzip reader (multistream by default), a stream may hold several gzip
    # members one after another; anything else after a member is an error.
    pending = prefix
    decoder = isal_zlib.decompressobj(31)
    at_member_start = True
    while True:
        if not pending:
            pending = raw.read(CHUNK_SIZE)
            if not pending:
                if at_member_start:
                    return
                raise CorruptLayerError("corrupt gzip stream: unexpected end of compressed data")
        if at_member_start and not pending.startswith(_GZIP_MAGIC[: len(pending)]):
            raise CorruptLayerError("corrupt gzip stream: invalid header after a gzip member")
        at_member_start = False
        try:
            out = decoder.decompress(pending, CHUNK_SIZE)
        except _GzipError as err:
            raise CorruptLayerError(f"corrupt gzip stream: {err}") from None
        if out:
            yield out
        if decoder.eof:
            pending = decoder.unused_data
            decoder = isal_zlib.decompressobj(31)
            at_member_start = True
        else:
            pending = decoder.unconsumed_tail


def _zstd_chunks(raw: Readable, prefix: bytes) -> Iterator[bytes]:
    # One decoder per frame: at the end of the input the last frame must be complete,
    # which is how a truncated layer is told apart from a finished one. Skippable frames
    # decode to nothing.
    pending = prefix
    decoder = ZstdDecompressor()
    at_frame_start = True
    while True:
        if decoder.needs_input or at_frame_start:
            if not pending:
                pending = raw.read(CHUNK_SIZE)
                if not pending:
                    if at_frame_start:
                        return
                    raise CorruptLayerError(
                        "corrupt zstd stream: unexpected end of compressed data"
                    )
            data, pending = pending, b""
        else:
            data = b""
        at_frame_start = False
        try:
            out = decoder.decompress(data, CHUNK_SIZE)
        except ZstdError as err:
            raise CorruptLayerError(f"corrupt zstd stream: {err}") from None
        if out:
            yield out
        if decoder.eof:
            pending = decoder.unused_data
            decoder = ZstdDecompressor()
            at_frame_start = True


# ----------------------------------------------------------------------------- writing

#: gzip levels 0-3 are ISA-L's (~400 MB/s here); 4-9 are zlib's, for smaller layers at a
#: tenth of the speed (zlib 6 is about what containerd's Go gzip writer gives).
GZIP_LEVELS = range(10)
GZIP_DEFAULT_LEVEL = 2
_ISAL_MAX_LEVEL = 3
ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL = CompressionParameter.compression_level.bounds()
ZSTD_DEFAULT_LEVEL = 3
_GZIP_WBITS = 31  # deflate inside a gzip wrapper whose header carries no time or name


class _Encoder(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class StreamCompressor:
    """Compresses a stream piece by piece: gzip, zstd, or none (bytes pass through).

    The output depends only on the input, the kind and the level (and the library
    versions): gzip headers carry no time, name or host, zstd runs single-threaded.
    """

    def __init__(self, kind: Compression, level: int | None = None) -> None:
        self.kind = kind
        self._encoder: _Encoder | None = None
        if kind is Compression.NONE:
            if level is not None:
                raise InvalidArgumentError("a compression level needs gzip or zstd")
        elif kind is Compression.GZIP:
            level = GZIP_DEFAULT_LEVEL if level is None else level
            if level not in GZIP_LEVELS:
                raise InvalidArgumentError(f"gzip level must be 0-9, not {level}")
            if level <= _ISAL_MAX_LEVEL:
                self._encoder = isal_zlib.compressobj(level, isal_zlib.DEFLATED, _GZIP_WBITS)
            else:
                self._encoder = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)
        else:
            level = ZSTD_DEFAULT_LEVEL if level is None else level
            if not ZSTD_MIN_LEVEL <= level <= ZSTD_MAX_LEVEL or level == 0:
                raise InvalidArgumentError(
                    f"zstd level must be 1-{ZSTD_MAX_LEVEL} (or negative, for speed), not {level}"
                )
            self._encoder = ZstdCompressor(level=level)
        self.level = level

    def compress(self, data: bytes) -> bytes:
        """The compressed bytes ready after ``data`` (maybe none)."""
        return data if self._encoder is None else self._encoder.compress(data)

    def flush(self) -> bytes:
        """The rest of the compressed stream; call once, at the end."""
        return b"" if self._encoder is None else self._encoder.flush()
