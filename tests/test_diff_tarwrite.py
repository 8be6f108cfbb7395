"""The tar writer makes Go's header choices (checked byte for byte against containerd in
test_diff_containerd.py); here, each choice on its own."""

from __future__ import annotations

import io
import tarfile

import pytest

from layerdiff.archive.tarstream import DIR, LINK, REG, SYMLINK, ChunkReader, TarHeader, TarReader
from layerdiff.archive.tarwrite import (
    END_OF_ARCHIVE,
    TarEntry,
    TarWriter,
    encode_header,
    pax_record,
    pax_time,
)
from layerdiff.errors import TreeReadError

S = 1_000_000_000


def blocks(entry: TarEntry) -> list[bytes]:
    raw = encode_header(entry)
    assert len(raw) % 512 == 0
    return [raw[i : i + 512] for i in range(0, len(raw), 512)]


def read_back(*entries: tuple[TarEntry, bytes]) -> list[TarHeader]:
    out: list[bytes] = []
    writer = TarWriter(out.append)
    for entry, data in entries:
        writer.add(entry, [data] if data else [])
    writer.close()
    reader = TarReader(ChunkReader(iter([b"".join(out)])))
    found = []
    while (header := reader.next()) is not None:
        found.append(header)
    return found


def test_a_plain_entry_is_one_ustar_block_with_numeric_owner_and_no_names() -> None:
    (block,) = blocks(TarEntry("etc/motd", REG, mode=0o644, uid=1000, gid=100, size=5,
                               mtime_ns=1_600_000_000 * S))
    assert block[0:9] == b"etc/motd\x00"
    assert block[100:108] == b"0000644\x00"
    assert block[108:124] == b"0001750\x000000144\x00"
    assert block[124:136] == b"00000000005\x00"
    assert block[136:148] == b"13727410000\x00"
    assert block[156:157] == b"0"
    assert block[257:265] == b"ustar\x0000"
    assert block[265:329] == bytes(64)  # no user or group name
    assert block[329:345] == b"0000000\x000000000\x00"
    checksum = sum(block[:148]) + 8 * 32 + sum(block[156:])
    assert block[148:156] == b"%06o\x00 " % checksum


def test_a_long_name_that_splits_stays_ustar() -> None:
    name = "d" * 120 + "/" + "f" * 90
    (block,) = blocks(TarEntry(name, REG))
    assert block[0:91] == b"f" * 90 + b"\x00"
    assert block[345:466] == b"d" * 120 + b"\x00"


def test_what_ustar_cannot_hold_goes_in_one_sorted_pax_header() -> None:
    name = "dir/" + "n" * 120
    entry = TarEntry(name, SYMLINK, uid=3_000_000, mtime_ns=1_600_000_000 * S + 500_000_000,
                     linkname="é", xattrs={"user.b": b"\xff\x00", "security.a": b"1"})
    pax, data, main = blocks(entry)
    assert pax[0:23] == b"dir/PaxHeaders.0/nnnnnn"  # Go's name for it, cut at 100 bytes
    assert pax[156:157] == b"x" and pax[257:265] == b"ustar\x0000"
    assert pax[329:345] == bytes(16)  # Go leaves the device fields of a PAX header empty
    assert data.rstrip(b"\x00") == b"".join(
        pax_record(key, value)
        for key, value in [
            (b"SCHILY.xattr.security.a", b"1"),
            (b"SCHILY.xattr.user.b", b"\xff\x00"),
            (b"linkpath", "é".encode()),
            (b"mtime", b"1600000000.5"),
            (b"path", name.encode()),
            (b"uid", b"3000000"),
        ]
    )
    assert main[0:100] == name.encode()[:100]  # as much of the name as fits
    assert main[108:116] == b"0000000\x00"  # the uid that does not fit is written as 0
    assert main[157:158] == b"\x00"  # the link target without its non-ASCII bytes
    (header,) = read_back((entry, b""))
    assert (header.name, header.linkname, header.uid) == (name, "é", 3_000_000)
    assert header.mtime_ns == entry.mtime_ns
    assert dict(header.xattrs()) == dict(entry.xattrs)


def test_a_cut_name_never_ends_in_a_slash() -> None:
    name = "a" * 99 + "/b"  # the first 100 bytes end in "/": Go ends the field early
    pax, _, main = blocks(TarEntry(name, REG, xattrs={"user.x": b"1"}))
    assert main[0:100] == b"a" * 99 + b"\x00"
    assert pax[0:15] == b"a" * 15


def test_directory_pax_headers_are_named_inside_the_directory() -> None:
    pax, _, main = blocks(TarEntry("a/dir/", DIR, mtime_ns=1))
    assert pax[0:20] == b"a/dir/PaxHeaders.0\x00\x00"
    assert main[0:7] == b"a/dir/\x00"


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, b"0"), (5 * S, b"5"), (5 * S + 120_000_000, b"5.12"), (-1_500_000_000, b"-1.5"),
     (-1, b"-0.000000001"), (-2 * S, b"-2")],
)
def test_pax_times_are_gos(ns: int, text: bytes) -> None:
    assert pax_time(ns) == text


def test_pax_record_lengths_count_their_own_digits() -> None:
    assert pax_record(b"k", b"v" * 3) == b"8 k=vvv\n"
    assert pax_record(b"k", b"v" * 5) == b"11 k=vvvvv\n"  # "10 k=vvvvv\n" is 11 long
    for size in range(1, 300):
        record = pax_record(b"key", b"x" * size)
        assert int(record.split(b" ")[0]) == len(record)


def test_times_before_1970_and_nanoseconds_need_pax() -> None:
    assert len(blocks(TarEntry("f", REG, mtime_ns=-S))) == 3
    assert len(blocks(TarEntry("f", REG, mtime_ns=1))) == 3
    assert len(blocks(TarEntry("f", REG, mtime_ns=S))) == 1


def test_python_tarfile_reads_what_our_reader_reads() -> None:
    entries = [
        (TarEntry("d/", DIR, mode=0o755, mtime_ns=S), b""),
        (TarEntry("d/f", REG, mode=0o4755, size=3, mtime_ns=S + 7), b"abc"),
        (TarEntry("d/g", LINK, linkname="d/f"), b""),
        (TarEntry("ü" * 70, REG, size=1), b"z"),
    ]
    ours = read_back(*entries)
    out: list[bytes] = []
    writer = TarWriter(out.append)
    for entry, data in entries:
        writer.add(entry, [data] if data else [])
    writer.close()
    stream = b"".join(out)
    assert stream.endswith(END_OF_ARCHIVE)
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        theirs = archive.getmembers()
        assert archive.extractfile("d/f").read() == b"abc"  # type: ignore[union-attr]
    assert [(m.name, m.mode, m.size) for m in theirs] == [
        (h.name.rstrip("/"), h.mode, h.size if h.typeflag == "0" else 0) for h in ours
    ]


def test_data_must_match_the_size_in_the_header() -> None:
    writer = TarWriter(lambda _: None)
    with pytest.raises(TreeReadError, match="only 2 of 3 bytes"):
        writer.add(TarEntry("f", REG, size=3), [b"ab"])
    with pytest.raises(TreeReadError, match="more than 3 bytes"):
        writer.add(TarEntry("f", REG, size=3), [b"ab", b"cd"])
