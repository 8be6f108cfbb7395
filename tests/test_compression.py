"""Compression is detected from the first bytes, as containerd does, and decoded safely."""

from __future__ import annotations

import gzip
import io
import lzma
import struct
from collections.abc import Callable

import pytest
from backports import zstd

from layerdiff.compression import CHUNK_SIZE, Compression, decompressed_chunks, detect
from layerdiff.errors import CorruptLayerError, UnsupportedCompressionError

PAYLOAD = bytes(range(256)) * 5000 + b"tail"


def _decode(data: bytes) -> bytes:
    return b"".join(decompressed_chunks(io.BytesIO(data)))


def _skippable(payload: bytes) -> bytes:
    return struct.pack("<II", 0x184D2A53, len(payload)) + payload


@pytest.mark.parametrize(
    ("encode", "kind"),
    [
        (gzip.compress, Compression.GZIP),
        (zstd.compress, Compression.ZSTD),
        (lambda b: _skippable(b"meta") + zstd.compress(b), Compression.ZSTD),
        (lambda b: b, Compression.NONE),
    ],
    ids=["gzip", "zstd", "zstd-skippable-first", "plain"],
)
def test_each_format_is_detected_and_decoded(
    encode: Callable[[bytes], bytes], kind: Compression
) -> None:
    data = encode(PAYLOAD)
    assert detect(data[:8]) is kind
    assert _decode(data) == PAYLOAD


def test_empty_stream_is_an_empty_layer() -> None:
    assert _decode(b"") == b""


def test_multi_member_gzip_and_multi_frame_zstd_decode_whole() -> None:
    assert _decode(gzip.compress(b"one") + gzip.compress(b"two")) == b"onetwo"
    assert _decode(zstd.compress(b"one") + zstd.compress(b"two")) == b"onetwo"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (lzma.compress(b"x"), "xz"),
        (b"BZh91AY&SY" + bytes(20), "bzip2"),
        (b"\x04\x22\x4d\x18" + bytes(20), "lz4"),
    ],
)
def test_known_unsupported_formats_are_named(data: bytes, name: str) -> None:
    with pytest.raises(UnsupportedCompressionError, match=name):
        _decode(data)


@pytest.mark.parametrize(
    "data",
    [
        gzip.compress(PAYLOAD)[:-20],
        zstd.compress(PAYLOAD)[:-20],
        gzip.compress(PAYLOAD)[:30] + b"\xff" * 64 + gzip.compress(PAYLOAD)[94:],
        zstd.compress(PAYLOAD)[:12] + b"\xff" * 64,
        gzip.compress(PAYLOAD) + b"not gzip",
    ],
    ids=["gzip-truncated", "zstd-truncated", "gzip-corrupt", "zstd-corrupt", "gzip-trailer"],
)
def test_damaged_streams_fail_with_a_named_error(data: bytes) -> None:
    with pytest.raises(CorruptLayerError, match=r"corrupt (gzip|zstd) stream"):
        _decode(data)


@pytest.mark.parametrize("encode", [gzip.compress, zstd.compress], ids=["gzip", "zstd"])
def test_a_bomb_is_decoded_in_bounded_pieces(encode: Callable[[bytes], bytes]) -> None:
    bomb = encode(bytes(64 * CHUNK_SIZE))
    sizes = [len(chunk) for chunk in decompressed_chunks(io.BytesIO(bomb))]
    assert sum(sizes) == 64 * CHUNK_SIZE
    assert max(sizes) <= CHUNK_SIZE
