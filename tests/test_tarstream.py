"""The tar reader agrees with Go's archive/tar on headers, records and stream ends."""

from __future__ import annotations

import io
import random
import tarfile
from collections.abc import Callable

import pytest

from layerdiff.archive import tarstream
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


# -- the fast path for plain ustar headers -----------------------------------------------


def _seed_blocks() -> list[bytes]:
    """Header blocks of every format, with prefixes, long numbers and odd types."""
    infos = [
        _info("usr/bin/tool", size=1234, mode=0o4755, uid=1000, gid=100, mtime=1_700_000_000),
        _info("etc/", tarfile.DIRTYPE, mode=0o755),
        _info("p" * 120 + "/leaf", size=7, mode=0o644),  # needs the ustar prefix field
        _info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        _info("link", tarfile.SYMTYPE, linkname="target"),
        _info("hard", tarfile.LNKTYPE, linkname="usr/bin/tool"),
        _info("big", size=0o77777777777, uid=0o7777777),
    ]
    blocks = []
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        for info in infos:
            # The entry's own header: the last block (after any PAX or long-name records).
            blocks.append(info.tobuf(fmt, "utf-8", "surrogateescape")[-512:])
    # tarfile pads some numbers with spaces; Go pads them with NULs: add that form too.
    go_style = bytearray(blocks[0])
    go_style[100:108] = b"0000755\x00"
    blocks.append(_checksummed(go_style))
    return blocks


def _outcome(parse: Callable[[bytes], TarHeader], block: bytes) -> object:
    try:
        return parse(block)
    except CorruptLayerError as err:
        return ("error", str(err))


@pytest.mark.parametrize("seed", range(4))
def test_fast_header_agrees_with_the_full_parser_on_mutated_blocks(seed: int) -> None:
    rng = random.Random(seed)
    interesting = [*range(100, 157), *range(257, 265), *range(329, 360), 0, 99, 345, 508]
    alphabet = b"01234567 \x00\x80\xff89x-+_"
    fast_hits = 0
    for base in _seed_blocks():
        for _ in range(800):
            block = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                pos = rng.choice(interesting)
                block[pos] = rng.choice(alphabet)
            raw = _checksummed(block) if rng.random() < 0.7 else bytes(block)
            # Twice: with the number cache as it is, then warmed by the full parser.
            for _ in range(2):
                full = _outcome(tarstream._parse_header, raw)
                fast = tarstream._fast_header(raw)
                if fast is not None:
                    fast_hits += 1
                    assert fast == full, raw
    assert fast_hits > 1000  # the test exercises the fast path, not only its refusals


def test_byte_sum_is_exact_for_ascii_and_other_blocks() -> None:
    rng = random.Random(7)
    blocks = [bytes([0x7F]) * 512, bytes([0xFF]) * 512, bytes(512), bytes([0x80]) + bytes(511)]
    blocks += [bytes(rng.randrange(128) for _ in range(512)) for _ in range(200)]
    blocks += [bytes(rng.randrange(256) for _ in range(512)) for _ in range(200)]
    for block in blocks:
        assert tarstream._byte_sum(block) == sum(block)


@pytest.mark.parametrize("chunk", [1, 100, 512, 513, 1000, 4096, 1 << 20])
def test_entries_are_the_same_however_the_stream_is_chunked(chunk: int) -> None:
    members = [
        (_info("d/", tarfile.DIRTYPE), b""),
        (_info("d/a", size=5), b"hello"),
        (_info("d/empty", size=0), b""),
        (_info("d/b", size=600), b"x" * 600),
        (_info("d/l", tarfile.SYMTYPE, linkname="a"), b""),
        (_info("d/" + "n" * 130, size=3), b"abc"),  # PAX path record
        (_info("d/c", size=512), b"y" * 512),
    ]
    data = _tar(*members, fmt=tarfile.PAX_FORMAT) + b"trailing"
    assert _read_all(data, chunk) == _read_all(data, len(data))
    # data_at_once gives the same bytes when the chunk holds them, else None.
    pieces = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
    reader = TarReader(ChunkReader(pieces))
    got = []
    while reader.next() is not None:
        whole = reader.data_at_once()
        got.append(bytes(whole) if whole is not None else b"".join(map(bytes, reader.data())))
    assert got == [body for _, body in members]
