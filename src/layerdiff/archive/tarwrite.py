"""A streaming tar writer whose headers are byte for byte those of Go's ``archive/tar``.

containerd writes layers with Go's ``tar.Writer`` and headers marked ``FormatPAX``, so
this module makes the same choices: a plain ustar header (a long name split into prefix
and name when it can be) unless something needs PAX — a name or link target that is not
ASCII or does not fit, an owner or size too large for octal, a time before 1970 or with
nanoseconds, extended attributes — and then a PAX extended header named
``dir/PaxHeaders.0/base`` with its records sorted by key, followed by the main header.
No user or group names, no access or change times: nothing about the host or the
moment of writing gets in, so the same entries always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from layerdiff.archive.tarstream import BLOCK, HEADER_ONLY_TYPES, PAX_HEADER
from layerdiff.errors import TreeReadError, UnsupportedError

END_OF_ARCHIVE = bytes(2 * BLOCK)


_NAME_SIZE = 100
_PREFIX_SIZE = 155
_NS = 1_000_000_000
_USTAR_MAGIC = b"ustar\x0000"
_XATTR_PREFIX = b"SCHILY.xattr."
_NON_ASCII = bytes(range(0x80, 0x100)) + b"\x00"


@dataclass(slots=True)
class TarEntry:
    """One tar entry to write; names are file-system names (``surrogateescape`` str)."""

    name: str
    typeflag: str  # one of tarstream's type flags
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def data_size(self) -> int:
        """How many data bytes follow the header."""
        return 0 if self.typeflag in HEADER_ONLY_TYPES else self.size


def _fits_octal(width: int, value: int) -> bool:
    return value >= 0 and value < 1 << ((width - 1) * 3)


def _octal(width: int, value: int) -> bytes:
    # Go's formatOctal: zero-padded, NUL-terminated; a value that does not fit is written
    # as 0 (its true value then travels in a PAX record).
    if not _fits_octal(width, value):
        value = 0
    return b"%0*o\x00" % (width - 1, value)


def _ascii(raw: bytes) -> bytes:
    """Go's toASCII: drop every byte that is not ASCII (and NULs)."""
    return raw.translate(None, _NON_ASCII)


def _text(width: int, raw: bytes) -> bytes:
    """Go's formatString of toASCII(raw): as much as fits; no NUL when it fills the field."""
    raw = _ascii(raw)
    if len(raw) <= width:
        return raw
    field = bytearray(raw[:width])
    if field[-1] == 0x2F:
        # Go ends a cut name that would end in "/" early, lest a reader take a file for a
        # directory: a NUL replaces the first of the trailing slashes.
        field[len(raw[: width - 1].rstrip(b"/"))] = 0
    return bytes(field)


def _is_ascii(raw: bytes) -> bool:
    return len(_ascii(raw)) == len(raw)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's splitUSTARPath: (prefix, name) for a long ASCII name, if it can be split."""
    length = len(name)
    if length <= _NAME_SIZE or not _is_ascii(name):
        return None
    if length > _PREFIX_SIZE + 1:
        length = _PREFIX_SIZE + 1
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    suffix_len = len(name) - i - 1
    if i <= 0 or suffix_len > _NAME_SIZE or suffix_len == 0 or i > _PREFIX_SIZE:
        return None
    return name[:i], name[i + 1 :]


def pax_time(ns: int) -> bytes:
    """Go's formatPAXTime: seconds, and a fraction without trailing zeros if any."""
    secs, nsecs = divmod(ns, _NS)
    if nsecs == 0:
        return b"%d" % secs
    sign = b""
    if secs < 0:
        sign, secs, nsecs = b"-", -(secs + 1), _NS - nsecs
    return (b"%s%d.%09d" % (sign, secs, nsecs)).rstrip(b"0")


def pax_record(key: bytes, value: bytes) -> bytes:
    """One ``"LEN KEY=VALUE\\n"`` record, LEN counting its own digits."""
    size = len(key) + len(value) + 3
    size += len(str(size))
    record = b"%d %s=%s\n" % (size, key, value)
    if len(record) != size:
        record = b"%d %s=%s\n" % (len(record), key, value)
    return record


def _checksummed(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _pad(size: int) -> int:
    return -size % BLOCK


def encode_header(entry: TarEntry) -> bytes:
    """The header blocks of ``entry`` (its PAX extended header first, when it needs one)."""
    name = entry.name.encode("utf-8", "surrogateescape")
    linkname = entry.linkname.encode("utf-8", "surrogateescape")
    records: dict[bytes, bytes] = {}
    ustar = True  # whether a plain ustar header can hold every field
    prefer_pax = False  # Go's preferPAX: ustar would lose sub-second or pre-1970 times

    split: tuple[bytes, bytes] | None = None
    if len(name) > _NAME_SIZE or not _is_ascii(name):
        records[b"path"] = name
        split = _split_ustar(name)
        if split is None:
            ustar = False
    if len(linkname) > _NAME_SIZE or not _is_ascii(linkname):
        records[b"linkpath"] = linkname
        ustar = False
    for field_name, number, width in (
        (b"uid", entry.uid, 8), (b"gid", entry.gid, 8), (b"size", entry.size, 12)
    ):
        if not _fits_octal(width, number):
            records[field_name] = b"%d" % number
            ustar = False
    for number in (entry.devmajor, entry.devminor):
        if not _fits_octal(8, number):
            raise UnsupportedError(f"{entry.name!r}: device number {number} does not fit tar")
    secs, nsecs = divmod(entry.mtime_ns, _NS)
    if not _fits_octal(12, secs):
        ustar = False
    if nsecs or not _fits_octal(12, secs):
        prefer_pax = True
        records[b"mtime"] = pax_time(entry.mtime_ns)
    for xattr, value in entry.xattrs.items():
        records[_XATTR_PREFIX + xattr.encode("utf-8", "surrogateescape")] = value
        ustar = False

    if ustar and not prefer_pax:
        prefix = b""
        if split is not None:
            prefix, name = split
        block = _main_block(entry, name, linkname)
        block[345:500] = _text(155, prefix).ljust(155, b"\x00")
        return _checksummed(block)

    data = b"".join(pax_record(key, records[key]) for key in sorted(records))
    # Go names it path.Join(dir, "PaxHeaders.0", base): "a/PaxHeaders.0/b" for "a/b",
    # "a/b/PaxHeaders.0" for the directory "a/b/".
    if name.endswith(b"/"):
        pax_name = name + b"PaxHeaders.0"
    else:
        directory, _, base = name.rpartition(b"/")
        pax_name = (directory + b"/" if directory else b"") + b"PaxHeaders.0/" + base
    pax_name = _ascii(pax_name)[:_NAME_SIZE].rstrip(b"/")
    pax = bytearray(BLOCK)
    pax[0 : len(pax_name)] = pax_name
    pax[100:108] = _octal(8, 0)
    pax[108:116] = _octal(8, 0)
    pax[116:124] = _octal(8, 0)
    pax[124:136] = _octal(12, len(data))
    pax[136:148] = _octal(12, 0)
    pax[156:157] = PAX_HEADER.encode("ascii")
    pax[257:265] = _USTAR_MAGIC
    main = _main_block(entry, name, linkname)
    return _checksummed(pax) + data + bytes(_pad(len(data))) + _checksummed(main)


def _main_block(entry: TarEntry, name: bytes, linkname: bytes) -> bytearray:
    """Go's templateV7Plus with ustar magic: the fields every format shares."""
    block = bytearray(BLOCK)
    name_field = _text(100, name)
    block[0 : len(name_field)] = name_field
    block[100:108] = _octal(8, entry.mode)
    block[108:116] = _octal(8, entry.uid)
    block[116:124] = _octal(8, entry.gid)
    block[124:136] = _octal(12, entry.size)
    block[136:148] = _octal(12, entry.mtime_ns // _NS)
    block[156:157] = entry.typeflag.encode("ascii")
    link_field = _text(100, linkname)
    block[157 : 157 + len(link_field)] = link_field
    block[257:265] = _USTAR_MAGIC
    # User and group names stay empty: numeric ids only, nothing looked up on the host.
    block[329:337] = _octal(8, entry.devmajor)
    block[337:345] = _octal(8, entry.devminor)
    return block


class TarWriter:
    """Writes tar entries to ``sink`` (a callable taking bytes) as one stream."""

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self._sink = sink

    def add(self, entry: TarEntry, data: Iterable[bytes] = ()) -> None:
        """Write ``entry``; ``data`` must yield exactly ``entry.data_size`` bytes."""
        self._sink(encode_header(entry))
        expected = entry.data_size
        written = 0
        for piece in data:
            written += len(piece)
            if written > expected:
                break
            self._sink(piece)
        if written != expected:
            # A file that grew or shrank between its lstat and its read: the header
            # already promised a size, so the layer cannot be finished honestly.
            more = "more than" if written > expected else f"only {written} of"
            raise TreeReadError(f"{entry.name!r} changed while it was read: {more} "
                              f"{expected} bytes")
        if expected:
            self._sink(bytes(_pad(expected)))

    def close(self) -> None:
        """Write the end-of-archive marker (two zero blocks)."""
        self._sink(END_OF_ARCHIVE)
