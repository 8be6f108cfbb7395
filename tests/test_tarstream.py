"""The tar reader agrees with Go's archive/tar on headers, records and stream ends."""

from __future__ import annotations

import io
import tarfile

import pytest

from layerdiff.archive.tarstream import (
    MAX_SPECIAL_FILE_SIZE,
    ChunkReader,
    TarHeader,
    TarReader,
)
from layerdiff.errors import CorruptLayerError, UnsupportedError


def _tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def _read_all(data: bytes, chunk: int = 700) -> list[tuple[TarHeader, bytes]]:
    pieces = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
    reader = TarReader(ChunkReader(pieces))
    out = []
    while (hdr := reader.next()) is not None:
        out.append((hdr, b"".join(bytes(p) for p in reader.data())))
    return out


def _checksummed(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def test_pax_records_set_name_times_and_xattrs() -> None:
    info = _info("x" * 150, size=3, mtime=1.25)
    info.pax_headers = {"atime": "7.000000001", "SCHILY.xattr.user.k": "v\u00e9"}
    [(hdr, data)] = _read_all(_tar((info, b"abc")))
    assert hdr.name == "x" * 150
    assert hdr.mtime_ns == 1_250_000_000
    assert hdr.atime_ns == 7_000_000_001
    assert list(hdr.xattrs()) == [("user.k", "v\u00e9".encode())]
    assert data == b"abc"


def test_gnu_long_names_and_link_names() -> None:
    info = _info("n" * 200, tarfile.SYMTYPE, linkname="t" * 300)
    [(hdr, _)] = _read_all(_tar((info, b""), fmt=tarfile.GNU_FORMAT))
    assert (hdr.name, hdr.linkname, hdr.typeflag) == ("n" * 200, "t" * 300, "2")


def test_header_only_types_carry_no_data_whatever_their_size_field() -> None:
    # Go's reader ignores the size of links, devices, dirs and fifos for data blocks:
    # a bogus size must not make the next header be read from inside "data".
    link = _info("l", tarfile.SYMTYPE, linkname="t")
    sym = bytearray(_tar((link, b""), fmt=tarfile.USTAR_FORMAT)[:512])
    sym[124:136] = b"%011o\x00" % 4096
    follower = _tar((_info("f", size=2), b"hi"), fmt=tarfile.USTAR_FORMAT)
    entries = _read_all(_checksummed(sym) + follower)
    assert [(h.name, d) for h, d in entries] == [("l", b""), ("f", b"hi")]


def test_base256_numbers_and_negative_times() -> None:
    block = bytearray(_tar((_info("f"), b""), fmt=tarfile.GNU_FORMAT)[:512])
    block[136:148] = b"\xff" * 11 + b"\xfe"  # -2 in base-256
    block[108:116] = b"\x80" + b"\x00" * 3 + (100000).to_bytes(4, "big")
    [(hdr, _)] = _read_all(_checksummed(block))
    assert hdr.mtime_ns == -2 * 10**9
    assert hdr.uid == 100000


def test_bad_checksum_is_a_corrupt_layer() -> None:
    block = bytearray(_tar((_info("f"), b""))[:512])
    block[0:1] = b"g"
    with pytest.raises(CorruptLayerError, match="checksum"):
        _read_all(bytes(block))


def test_stream_may_end_without_end_of_archive_blocks() -> None:
    data = _tar((_info("f", size=5), b"hello"))
    first_entry_end = 512 + 512 + 512 + 512  # pax header + record, header, data block
    entries = _read_all(data[:first_entry_end])
    assert [h.name for h, _ in entries] == ["f"]


@pytest.mark.parametrize("cut", [512 + 5, 512 + 100], ids=["before", "inside"])
def test_stream_may_end_before_or_inside_the_padding_after_data(cut: int) -> None:
    # Go's tryReadFull takes a short read at the end of the stream as the end.
    data = _tar((_info("f", size=5), b"hello"), fmt=tarfile.USTAR_FORMAT)
    assert [d for _, d in _read_all(data[:cut])] == [b"hello"]


@pytest.mark.parametrize("cut", [100, 512 + 2], ids=["header", "data"])
def test_truncation_inside_a_header_or_data_is_an_error(cut: int) -> None:
    data = _tar((_info("f", size=600), b"x" * 600), fmt=tarfile.USTAR_FORMAT)
    with pytest.raises(CorruptLayerError, match="truncated"):
        _read_all(data[:cut])


def test_zero_block_followed_by_a_header_is_an_error() -> None:
    data = _tar((_info("f"), b""), fmt=tarfile.USTAR_FORMAT)
    with pytest.raises(CorruptLayerError, match="zero block"):
        _read_all(bytes(512) + data[:512])


def test_pax_size_overrides_the_header_size() -> None:
    info = _info("f", size=4)
    info.pax_headers = {"size": "4"}
    data = bytearray(_tar((info, b"data")))
    # The ustar header after the PAX record says 0 bytes; the PAX size (4) wins.
    ustar_at = 1024
    data[ustar_at + 124 : ustar_at + 136] = b"%011o\x00" % 0
    data[ustar_at : ustar_at + 512] = _checksummed(bytearray(data[ustar_at : ustar_at + 512]))
    [(hdr, payload)] = _read_all(bytes(data))
    assert (hdr.size, payload) == (4, b"data")


def test_oversized_pax_header_is_refused() -> None:
    info = _info("f")
    info.pax_headers = {"comment": "x" * (MAX_SPECIAL_FILE_SIZE + 1)}
    with pytest.raises(CorruptLayerError, match="exceeds"):
        _read_all(_tar((info, b"")))


@pytest.mark.parametrize(
    "record",
    [b"4 a=\n", b"99 a=b\n", b"6 a=b\x00", b"x a=b\n", b"6 =bc\n", b"10 path=a\x00b\n"],
)
def test_malformed_pax_records_are_refused(record: bytes) -> None:
    header = bytearray(_tar((_info("h", b"x", size=len(record)), b""))[:512])
    header[124:136] = b"%011o\x00" % len(record)
    pax = _checksummed(header) + record.ljust(512, b"\x00")
    rest = _tar((_info("f"), b""), fmt=tarfile.USTAR_FORMAT)
    with pytest.raises(CorruptLayerError, match="PAX"):
        _read_all(pax + rest)


def test_rega_with_trailing_slash_is_a_directory() -> None:
    block = bytearray(_tar((_info("d/"), b""), fmt=tarfile.USTAR_FORMAT)[:512])
    block[156] = 0
    [(hdr, _)] = _read_all(_checksummed(block))
    assert hdr.typeflag == "5"


def test_sparse_files_are_refused_by_name() -> None:
    info = _info("s")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0"}
    with pytest.raises(UnsupportedError, match="sparse"):
        _read_all(_tar((info, b"")))


def test_global_pax_header_is_returned_and_does_not_leak_into_later_entries() -> None:
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"mtime": "99"}
    ) as archive:
        archive.addfile(_info("f", mtime=5))
    entries = _read_all(out.getvalue())
    assert [h.typeflag for h, _ in entries] == ["g", "0"]
    assert entries[1][0].mtime_ns == 5 * 10**9
