"""A raw tar writer for tests: any header, including ones that no tar tool would write.

Python's ``tarfile`` refuses to write a bad checksum, a negative size, a PAX size that
disagrees with the header, a name with a NUL in it... Layers that attack an applier are
made of exactly such headers, so this module lays out the 512-byte blocks itself, field
by field (POSIX ustar, with GNU and v7 variants). Every field can be overridden with an
``int`` (encoded as the format would: octal, or base-256 when it does not fit) or with
raw ``bytes`` (written as they are, to make malformed fields).

``layer(reg("etc/motd", b"hi"), symlink("bin", "usr/bin"), whiteout("old"))`` is a
complete layer. Entry helpers return the bytes of one entry: its PAX or GNU long-name
records (added automatically for names over 100 bytes, or given explicitly), its header
block, and its data padded to a block.
"""

from __future__ import annotations

import gzip as _gzip
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypedDict

from backports import zstd as _zstd

if TYPE_CHECKING:
    from typing_extensions import Unpack

BLOCK = 512
#: The end-of-archive marker: two zero blocks.
END = bytes(2 * BLOCK)
#: The mtime of every header unless told otherwise (2020-09-13), for reproducible bytes.
DEFAULT_MTIME = 1_600_000_000

#: A name or other text field: ``str`` is UTF-8 encoded, ``bytes`` are written as given.
Text = str | bytes
#: A numeric field: an ``int`` is encoded, ``bytes`` are the raw field content.
Number = int | bytes
#: PAX records: a mapping, or a sequence of pairs when order or duplicates matter.
Records = Mapping[Text, Text] | Sequence[tuple[Text, Text]]
Magic = Literal["ustar", "gnu", "v7"]

# Type flags.
REG = b"0"
REGA = b"\x00"
LINK = b"1"
SYMLINK = b"2"
CHAR = b"3"
BLOCKDEV = b"4"
DIR = b"5"
FIFO = b"6"
PAX = b"x"
PAX_GLOBAL = b"g"
GNU_LONGNAME = b"L"
GNU_LONGLINK = b"K"

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


class HeaderFields(TypedDict, total=False):
    """Header fields that every entry helper accepts as keyword arguments."""

    mode: Number
    uid: Number
    gid: Number
    size: Number
    mtime: Number
    uname: Text
    gname: Text
    devmajor: Number
    devminor: Number
    magic: Magic | bytes
    version: bytes
    prefix: Text
    atime: Number
    ctime: Number
    checksum: Number
    signed_checksum: bool


def _text(value: Text) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def octal(value: int, width: int) -> bytes:
    """``value`` as zero-padded octal digits and a NUL, filling ``width`` bytes."""
    digits = b"%o" % value
    if value < 0 or len(digits) > width - 1:
        raise ValueError(f"{value} does not fit in {width - 1} octal digits")
    return digits.rjust(width - 1, b"0") + b"\x00"


def base256(value: int, width: int) -> bytes:
    """``value`` in GNU base-256: big-endian two's complement with the top bit set."""
    if not -(1 << (8 * width - 2)) <= value < 1 << (8 * width - 2):
        raise ValueError(f"{value} does not fit in {width} base-256 bytes")
    raw = bytearray((value % (1 << (8 * width))).to_bytes(width, "big"))
    raw[0] |= 0x80
    return bytes(raw)


def number(value: Number, width: int) -> bytes:
    """A numeric field: octal when it fits, else base-256; raw ``bytes`` as they are."""
    if isinstance(value, bytes):
        return value
    if 0 <= value < 8 ** (width - 1):
        return octal(value, width)
    return base256(value, width)


def _put(block: bytearray, offset: int, width: int, raw: bytes, what: str) -> None:
    if len(raw) > width:
        raise ValueError(f"{what} is {len(raw)} bytes; the field holds {width}")
    block[offset : offset + len(raw)] = raw


_MAGICS: dict[str, tuple[bytes, bytes]] = {
    "ustar": (b"ustar\x00", b"00"),
    "gnu": (b"ustar ", b" \x00"),
    "v7": (b"", b""),
}


def checksum_of(block: bytes | bytearray, *, signed: bool = False) -> int:
    """The checksum of a header block, counting its checksum field as spaces."""
    rest = bytes(block[:148]) + b" " * 8 + bytes(block[156:])
    if signed:
        return sum(b - 256 if b >= 0x80 else b for b in rest)
    return sum(rest)


def header(
    name: Text,
    typeflag: bytes = REG,
    linkname: Text = "",
    *,
    mode: Number = 0o644,
    uid: Number = 0,
    gid: Number = 0,
    size: Number = 0,
    mtime: Number = DEFAULT_MTIME,
    uname: Text = "",
    gname: Text = "",
    devmajor: Number = 0,
    devminor: Number = 0,
    magic: Magic | bytes = "ustar",
    version: bytes | None = None,
    prefix: Text = "",
    atime: Number | None = None,
    ctime: Number | None = None,
    checksum: Number | None = None,
    signed_checksum: bool = False,
) -> bytes:
    """One 512-byte header block, every field as given.

    ``magic`` picks the format ("ustar", "gnu" or "v7") or is 6 raw bytes; ``prefix``
    is the ustar prefix field, ``atime``/``ctime`` the GNU ones (they share the bytes).
    ``checksum`` replaces the computed checksum (an int is encoded as tar writes it);
    ``signed_checksum`` computes it the way old tars did, summing signed chars.
    """
    block = bytearray(BLOCK)
    _put(block, 0, 100, _text(name), "name")
    _put(block, 100, 8, number(mode, 8), "mode")
    _put(block, 108, 8, number(uid, 8), "uid")
    _put(block, 116, 8, number(gid, 8), "gid")
    _put(block, 124, 12, number(size, 12), "size")
    _put(block, 136, 12, number(mtime, 12), "mtime")
    _put(block, 156, 1, typeflag, "typeflag")
    _put(block, 157, 100, _text(linkname), "linkname")
    magic_bytes, default_version = _MAGICS[magic] if isinstance(magic, str) else (magic, b"")
    _put(block, 257, 6, magic_bytes, "magic")
    _put(block, 263, 2, default_version if version is None else version, "version")
    if magic != "v7":
        _put(block, 265, 32, _text(uname), "uname")
        _put(block, 297, 32, _text(gname), "gname")
        _put(block, 329, 8, number(devmajor, 8), "devmajor")
        _put(block, 337, 8, number(devminor, 8), "devminor")
    _put(block, 345, 155, _text(prefix), "prefix")
    if atime is not None:
        _put(block, 345, 12, number(atime, 12), "atime")
    if ctime is not None:
        _put(block, 357, 12, number(ctime, 12), "ctime")
    if checksum is None:
        checksum = checksum_of(block, signed=signed_checksum)
    block[148:156] = (
        checksum if isinstance(checksum, bytes) else b"%06o\x00 " % (checksum & 0o777777)
    )
    return bytes(block)


def pad(data: bytes) -> bytes:
    """``data`` followed by zeros up to the next block boundary."""
    return data + bytes(-len(data) % BLOCK)


def pax_record(key: Text, value: Text, *, length: int | None = None) -> bytes:
    """One PAX record, ``"LEN KEY=VALUE\\n"``; ``length`` overrides the computed LEN."""
    body = b" " + _text(key) + b"=" + _text(value) + b"\n"
    if length is None:
        length = len(body) + 1
        while len(str(length)) + len(body) != length:
            length += 1
    return str(length).encode() + body


def pax_data(records: Records) -> bytes:
    """The data of a PAX header: its records, in order."""
    pairs = records.items() if isinstance(records, Mapping) else records
    return b"".join(pax_record(key, value) for key, value in pairs)


def pax_header(
    records: Records | bytes,
    *,
    typeflag: bytes = PAX,
    name: Text = "././@PaxHeader",
    **fields: Unpack[HeaderFields],
) -> bytes:
    """A PAX extended header (``x``, or ``g`` for global) with ``records`` as its data.

    ``records`` may be raw ``bytes`` for malformed data; ``size`` in ``fields`` makes
    the header announce another size than the data it carries.
    """
    data = records if isinstance(records, bytes) else pax_data(records)
    fields.setdefault("size", len(data))
    return header(name, typeflag, **fields) + pad(data)


def pax_global(records: Records, name: Text = "pax_global_header") -> bytes:
    """A PAX global header (typeflag ``g``) named ``name``."""
    return pax_header(records, typeflag=PAX_GLOBAL, name=name)


def gnu_longname(name: Text, *, nul: bool = True) -> bytes:
    """A GNU ``L`` record carrying the next entry's name (NUL-terminated by default)."""
    data = _text(name) + (b"\x00" if nul else b"")
    return header("././@LongLink", GNU_LONGNAME, size=len(data), magic="gnu") + pad(data)


def gnu_longlink(target: Text, *, nul: bool = True) -> bytes:
    """A GNU ``K`` record carrying the next entry's link target."""
    data = _text(target) + (b"\x00" if nul else b"")
    return header("././@LongLink", GNU_LONGLINK, size=len(data), magic="gnu") + pad(data)


def entry(
    name: Text,
    typeflag: bytes,
    data: bytes = b"",
    linkname: Text = "",
    *,
    pax: Records | None = None,
    **fields: Unpack[HeaderFields],
) -> bytes:
    """One entry: PAX records if any, the header, and ``data`` padded to a block.

    A name or link target over 100 bytes goes into PAX ``path``/``linkpath`` records
    (the header keeps its first 100 bytes), as tar tools do. ``size`` defaults to
    ``len(data)``; giving it makes the header lie about the data that follows.
    """
    records: list[tuple[Text, Text]] = []
    if pax is not None:
        records = list(pax.items() if isinstance(pax, Mapping) else pax)
    raw_name, raw_link = _text(name), _text(linkname)
    if len(raw_name) > 100:
        records.insert(0, ("path", raw_name))
        raw_name = raw_name[:100]
    if len(raw_link) > 100:
        records.insert(0, ("linkpath", raw_link))
        raw_link = raw_link[:100]
    fields.setdefault("size", len(data))
    out = pax_header(records) if records else b""
    return out + header(raw_name, typeflag, raw_link, **fields) + pad(data)


def reg(
    name: Text, data: bytes = b"", *, pax: Records | None = None, **fields: Unpack[HeaderFields]
) -> bytes:
    """A regular file (mode 0644 unless told)."""
    return entry(name, REG, data, pax=pax, **fields)


def dir_(name: Text, *, pax: Records | None = None, **fields: Unpack[HeaderFields]) -> bytes:
    """A directory (mode 0755 unless told); a trailing ``/`` is added if missing."""
    fields.setdefault("mode", 0o755)
    raw = _text(name)
    if not raw.endswith(b"/"):
        raw += b"/"
    return entry(raw, DIR, pax=pax, **fields)


def symlink(
    name: Text, target: Text, *, pax: Records | None = None, **fields: Unpack[HeaderFields]
) -> bytes:
    """A symbolic link ``name -> target`` (mode 0777 unless told)."""
    fields.setdefault("mode", 0o777)
    return entry(name, SYMLINK, b"", target, pax=pax, **fields)


def hardlink(
    name: Text, target: Text, *, pax: Records | None = None, **fields: Unpack[HeaderFields]
) -> bytes:
    """A hard link ``name`` to the archive path ``target``."""
    return entry(name, LINK, b"", target, pax=pax, **fields)


def chardev(
    name: Text, major: int, minor: int, *, pax: Records | None = None,
    **fields: Unpack[HeaderFields],
) -> bytes:
    """A character device ``major``/``minor``."""
    fields["devmajor"], fields["devminor"] = major, minor
    return entry(name, CHAR, pax=pax, **fields)


def blockdev(
    name: Text, major: int, minor: int, *, pax: Records | None = None,
    **fields: Unpack[HeaderFields],
) -> bytes:
    """A block device ``major``/``minor``."""
    fields["devmajor"], fields["devminor"] = major, minor
    return entry(name, BLOCKDEV, pax=pax, **fields)


def fifo(name: Text, *, pax: Records | None = None, **fields: Unpack[HeaderFields]) -> bytes:
    """A named pipe."""
    return entry(name, FIFO, pax=pax, **fields)


def _whiteout_name(path: str, base: str) -> str:
    parent = path.rstrip("/").rpartition("/")[0]
    return f"{parent}/{base}" if parent else base


def whiteout(path: str, **fields: Unpack[HeaderFields]) -> bytes:
    """The whiteout deleting ``path``: an empty file ``DIR/.wh.BASE``."""
    base = path.rstrip("/").rpartition("/")[2]
    return reg(_whiteout_name(path, WHITEOUT_PREFIX + base), **fields)


def opaque(directory: str, **fields: Unpack[HeaderFields]) -> bytes:
    """The opaque marker of ``directory`` (``""`` for the layer root)."""
    directory = directory.strip("/")
    return reg(f"{directory}/{OPAQUE}" if directory else OPAQUE, **fields)


def layer(*entries: bytes | Iterable[bytes], end: bool = True, trailing: bytes = b"") -> bytes:
    """The entries in order, the end-of-archive blocks (unless ``end=False``), ``trailing``.

    An entry may also be an iterable of entries (a generated run of them).
    """
    parts: list[bytes] = []
    for item in entries:
        if isinstance(item, bytes):
            parts.append(item)
        else:
            parts.extend(item)
    if end:
        parts.append(END)
    parts.append(trailing)
    return b"".join(parts)


def gzip(data: bytes) -> bytes:
    """``data`` as one gzip member, reproducibly (no time in its header)."""
    return _gzip.compress(data, mtime=0)


def zstd(data: bytes) -> bytes:
    """``data`` as one zstd frame."""
    return _zstd.compress(data)


class StreamedLayer(io.RawIOBase):
    """A readable stream over generated entries: a layer too large to hold in memory.

    The end-of-archive blocks follow the last entry.
    """

    def __init__(self, entries: Iterable[bytes]) -> None:
        self._chunks = _with_end(entries)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buf = chunk
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _with_end(entries: Iterable[bytes]) -> Iterator[bytes]:
    yield from entries
    yield END


def tiny_files(count: int, per_dir: int = 1000, data: bytes = b"") -> Iterator[bytes]:
    """``count`` files ``dN/fI`` holding ``data``, ``per_dir`` to a directory, each
    directory's entry before its files.

    Headers are patched from one template (``reg`` per entry would take longer than the
    apply), and yielded a few hundred at a time.
    """
    template = reg("", data)
    blank = checksum_of(template[:BLOCK])  # with an empty name
    batch: list[bytes] = []
    for i in range(count):
        if i % per_dir == 0:
            batch.append(dir_(f"d{i // per_dir}"))
        name = f"d{i // per_dir}/f{i}".encode()
        block = bytearray(template)
        block[: len(name)] = name
        block[148:156] = b"%06o\x00 " % (blank + sum(name))
        batch.append(bytes(block))
        if len(batch) >= 256:
            yield b"".join(batch)
            batch.clear()
    yield b"".join(batch)
