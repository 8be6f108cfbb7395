"""A streaming tar reader that reads headers exactly as Go's ``archive/tar`` does.

containerd parses layers with Go's reader, so a drop-in applier must agree with it on
every header: which format a block is in, how numbers and PAX records are parsed, when
a stream has ended, what is an error. Python's ``tarfile`` differs in many of these (and
had parser bugs: CVE-2024-6232, CVE-2025-8194), so this module reads headers itself.

The reader is sans-I/O in spirit: it pulls bytes from a ``ChunkReader`` over an iterator
of byte chunks and hands entry data back as ``memoryview`` slices of those chunks, so a
file's bytes are never copied between decompression and ``write``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from layerdiff.errors import CorruptLayerError, LimitExceededError, UnsupportedError

BLOCK = 512

# Type flags (Go's archive/tar names in comments).
REG = "0"  # TypeReg
REGA = "\x00"  # TypeRegA
LINK = "1"  # TypeLink
SYMLINK = "2"  # TypeSymlink
CHAR = "3"  # TypeChar
BLOCKDEV = "4"  # TypeBlock
DIR = "5"  # TypeDir
FIFO = "6"  # TypeFifo
PAX_HEADER = "x"  # TypeXHeader
PAX_GLOBAL = "g"  # TypeXGlobalHeader
GNU_LONGNAME = "L"  # TypeGNULongName
GNU_LONGLINK = "K"  # TypeGNULongLink
GNU_SPARSE = "S"  # TypeGNUSparse

#: Types whose size field does not announce data blocks (Go's isHeaderOnlyType).
HEADER_ONLY_TYPES = frozenset({LINK, SYMLINK, CHAR, BLOCKDEV, DIR, FIFO})

#: Go's maxSpecialFileSize: the largest PAX or GNU long-name record it reads.
MAX_SPECIAL_FILE_SIZE = 1 << 20

PAX_XATTR_PREFIX = "SCHILY.xattr."

_NS = 1_000_000_000
_ZERO_BLOCK = bytes(BLOCK)
_HIGH_BYTES = bytes(range(0x80, 0x100))
_OCTAL_DIGITS = b"01234567"
_OCTAL_CACHE: dict[bytes, int] = {}
#: How many fields each number cache keeps (a hostile layer cannot grow them further).
_CACHE_ENTRIES = 4096
#: Raw mtime fields of ``_fast_header`` and their values in ns (layers repeat them).
_MTIME_CACHE: dict[bytes, int] = {}
_DECIMAL_DIGITS = b"0123456789"
#: The ustar header's fields up to the prefix, in order, but for the user and group
#: names that are skipped (see ``_fast_header``).
_USTAR = struct.Struct("100s8s8s8s12s12s8sc100s8s64x8s8s155s")
_USTAR_MAGIC = b"ustar\x0000"
_FAST_TYPES = {b"0": REG, b"5": DIR}


@dataclass(slots=True)
class TarHeader:
    """One entry of a tar stream, after PAX and GNU long-name records are merged in.

    Times are nanoseconds since the epoch; ``atime_ns`` is ``None`` when the archive
    carries no access time (Go's zero ``time.Time``).
    """

    name: str
    typeflag: str
    linkname: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    atime_ns: int | None = None
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] = field(default_factory=dict)

    @property
    def data_size(self) -> int:
        """How many bytes of data follow this header in the stream."""
        return 0 if self.typeflag in HEADER_ONLY_TYPES else self.size

    def xattrs(self) -> Iterator[tuple[str, bytes]]:
        """The ``SCHILY.xattr.*`` records, as (name, value) pairs."""
        for key, value in self.pax.items():
            if key.startswith(PAX_XATTR_PREFIX):
                yield key[len(PAX_XATTR_PREFIX) :], value.encode("utf-8", "surrogateescape")


class TruncatedError(CorruptLayerError):
    """The stream ended inside a header or inside an entry's data."""


class ChunkReader:
    """Exact-size reads over an iterator of byte chunks, without copying where possible."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._view = memoryview(self._buf)  # of _buf, made once per chunk
        self._pos = 0

    def _fill(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self._buf, self._view, self._pos = chunk, memoryview(chunk), 0
                return True
        self._buf, self._view, self._pos = b"", memoryview(b""), 0
        return False

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes; fewer only at the end of the stream."""
        end = self._pos + size
        if end <= len(self._buf):
            out = self._buf[self._pos : end]
            self._pos = end
            return out
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < size and self._fill():
            take = min(size - have, len(self._buf))
            parts.append(self._buf[:take])
            self._pos = take
            have += take
        return b"".join(parts)

    def block_after(self, skip: int) -> bytes | None:
        """The 512 bytes after the next ``skip``, if the current chunk holds all of them
        and they do not start with a NUL (maybe the end of the archive); else ``None``,
        and nothing is consumed."""
        start = self._pos + skip
        end = start + BLOCK
        buf = self._buf
        if end > len(buf) or not buf[start]:
            return None
        self._pos = end
        return buf[start:end]

    def take(self, size: int) -> memoryview | None:
        """The next ``size`` bytes as one slice if the current chunk holds them all;
        else ``None``, and nothing is consumed."""
        start = self._pos
        end = start + size
        if end > len(self._buf):
            return None
        self._pos = end
        return self._view[start:end]

    def pieces(self, size: int) -> Iterator[memoryview]:
        """Exactly ``size`` bytes as slices of the underlying chunks."""
        while size > 0:
            if self._pos >= len(self._buf) and not self._fill():
                raise TruncatedError("truncated tar: the stream ends inside an entry's data")
            take = min(size, len(self._buf) - self._pos)
            yield self._view[self._pos : self._pos + take]
            self._pos += take
            size -= take

    def skip(self, size: int) -> None:
        """Discard exactly ``size`` bytes."""
        for _ in self.pieces(size):
            pass

    def drain(self) -> None:
        """Read the rest of the stream (trailing bytes count towards the layer digest)."""
        self._buf, self._view, self._pos = b"", memoryview(b""), 0
        for _ in self._chunks:
            pass


class TarReader:
    """Iterates the entries of a tar stream as Go's ``tar.Reader.Next`` does."""

    def __init__(self, source: ChunkReader, max_header_bytes: int = MAX_SPECIAL_FILE_SIZE) -> None:
        self._src = source
        self._max_special = min(max_header_bytes, MAX_SPECIAL_FILE_SIZE)
        self._remaining = 0  # unread data bytes of the current entry
        self._pad = 0  # padding after the current entry's data

    def data(self) -> Iterator[memoryview]:
        """The current entry's data, as memoryview pieces (consumed once)."""
        for piece in self._src.pieces(self._remaining):
            self._remaining -= len(piece)
            yield piece

    def data_at_once(self) -> memoryview | None:
        """The current entry's (unread) data as one slice, if it is all buffered; else
        ``None`` and ``data`` must be used."""
        view = self._src.take(self._remaining)
        if view is not None:
            self._remaining = 0
        return view

    def next(self) -> TarHeader | None:
        """The next entry, or ``None`` at the end of the archive."""
        # Fast path for nearly every entry of a layer: the next header is already
        # buffered and is a plain ustar file or directory.
        block = self._src.block_after(self._remaining + self._pad)
        if block is None:
            return self._next(None)
        self._remaining = self._pad = 0
        hdr = _fast_header(block)
        if hdr is None:
            return self._next(_parse_header(block))
        if hdr.typeflag == REG:
            self._remaining = hdr.size
            self._pad = -hdr.size % BLOCK
        return hdr

    def _next(self, first: TarHeader | None) -> TarHeader | None:
        """``next`` in full, starting with header ``first`` if it was read already."""
        gnu_long_name = gnu_long_link = ""
        pax: dict[str, str] | None = None
        while True:
            if self._remaining:
                self._src.skip(self._remaining)
                self._remaining = 0
            if self._pad:
                pad = self._src.read(self._pad)
                if len(pad) < self._pad:
                    return None  # Go's tryReadFull: the stream may end inside padding
                self._pad = 0
            hdr, first = first or self._read_header(), None
            if hdr is None:
                return None
            self._start_data(hdr.data_size)
            flag = hdr.typeflag
            if flag in (PAX_HEADER, PAX_GLOBAL):
                records = _parse_pax(self._read_special())
                if flag == PAX_GLOBAL:
                    merged = TarHeader(name=hdr.name, typeflag=flag)
                    _merge_pax(merged, records)
                    return merged
                pax = records
                continue
            if flag in (GNU_LONGNAME, GNU_LONGLINK):
                value = _cstring(self._read_special())
                if flag == GNU_LONGNAME:
                    gnu_long_name = value
                else:
                    gnu_long_link = value
                continue
            if pax is not None:
                _merge_pax(hdr, pax)
            if gnu_long_name:
                hdr.name = gnu_long_name
            if gnu_long_link:
                hdr.linkname = gnu_long_link
            if flag == REGA:
                hdr.typeflag = DIR if hdr.name.endswith("/") else REG
            if hdr.typeflag == GNU_SPARSE or (
                hdr.pax and any(k.startswith("GNU.sparse.") for k in hdr.pax)
            ):
                raise UnsupportedError(
                    f"tar entry {hdr.name!r}: GNU sparse files are not supported"
                )
            self._start_data(hdr.data_size)
            return hdr

    def _start_data(self, size: int) -> None:
        if size < 0:
            raise CorruptLayerError("invalid tar header: negative size")
        self._remaining = size
        self._pad = -size % BLOCK

    def _read_special(self) -> bytes:
        size, self._remaining = self._remaining, 0
        if size > MAX_SPECIAL_FILE_SIZE:
            raise CorruptLayerError(
                f"invalid tar header: extended header of {size} bytes exceeds the "
                f"{MAX_SPECIAL_FILE_SIZE}-byte limit"
            )
        if size > self._max_special:
            raise LimitExceededError(
                f"extended header of {size} bytes exceeds the configured limit of "
                f"{self._max_special} bytes"
            )
        data = self._src.read(size)
        if len(data) < size:
            raise TruncatedError("truncated tar: the stream ends inside an extended header")
        return data

    def _read_header(self) -> TarHeader | None:
        block = self._src.read(BLOCK)
        if not block:
            return None
        if len(block) < BLOCK:
            raise TruncatedError("truncated tar: the stream ends inside a header")
        if block == _ZERO_BLOCK:
            second = self._src.read(BLOCK)
            if not second:
                return None
            if len(second) < BLOCK:
                raise TruncatedError("truncated tar: the stream ends inside the end-of-archive")
            if second == _ZERO_BLOCK:
                return None
            raise CorruptLayerError("invalid tar header: a zero block followed by data")
        return _parse_header(block)


def _fast_header(block: bytes) -> TarHeader | None:
    """The header of a plain ustar file or directory, or ``None``: ``_parse_header``'s
    result for the common case only, with a third less work (one ``struct`` unpack,
    cached small numbers, no format dispatch).

    ``None`` (not an error) for anything else: another format or type, a number field
    that is not plain octal or not yet in the cache, a checksum of signed bytes. The
    caller then parses the block in full, which decides exactly as before.
    """
    (name, mode, uid, gid, size, mtime, checksum, flag, link, magic, major, minor, prefix) = (
        _USTAR.unpack_from(block)
    )
    typeflag = _FAST_TYPES.get(flag)
    if typeflag is None or magic != _USTAR_MAGIC or block[508:512] == b"tar\x00":
        return None
    cache = _OCTAL_CACHE
    mode_value, uid_value, gid_value = cache.get(mode), cache.get(uid), cache.get(gid)
    major_value, minor_value = cache.get(major), cache.get(minor)
    if (
        mode_value is None
        or uid_value is None
        or gid_value is None
        or major_value is None
        or minor_value is None
    ):
        return None
    # Octal digits padded with NULs or spaces: parse_octal's fast path, inlined.
    mtime_ns = _MTIME_CACHE.get(mtime)
    if mtime_ns is None:
        digits = mtime.rstrip(b" \x00")
        if digits.translate(None, _OCTAL_DIGITS):
            return None
        mtime_ns = int(digits or b"0", 8) * _NS
        if len(_MTIME_CACHE) < _CACHE_ENTRIES:
            _MTIME_CACHE[mtime] = mtime_ns
    size = size.rstrip(b" \x00")
    digits = checksum.rstrip(b" \x00")
    if size.translate(None, _OCTAL_DIGITS) or digits.translate(None, _OCTAL_DIGITS):
        return None
    # The checksum field counts as eight spaces: 256 instead of its own bytes.
    if int(digits or b"0", 8) != _byte_sum(block) - sum(checksum) + 256:
        return None
    end = name.find(b"\x00")
    text = (name if end < 0 else name[:end]).decode("utf-8", "surrogateescape")
    if prefix[0]:
        text = _cstring(prefix) + "/" + text
    return TarHeader(
        text,
        typeflag,
        _cstring(link) if link[0] else "",
        mode_value,
        uid_value,
        gid_value,
        int(size or b"0", 8),
        mtime_ns,
        None,
        major_value,
        minor_value,
    )


def _parse_header(block: bytes) -> TarHeader:
    fmt = _block_format(block)
    num = _NumberParser()
    parse = num.parse
    # Positional arguments and the empty-field checks save time on every entry.
    hdr = TarHeader(
        _cstring(block[0:100]),
        chr(block[156]),
        _cstring(block[157:257]) if block[157] else "",
        parse(block[100:108]),
        parse(block[108:116]),
        parse(block[116:124]),
        parse(block[124:136]),
        parse(block[136:148]) * _NS,
    )
    if fmt != "v7":
        hdr.devmajor = parse(block[329:337])
        hdr.devminor = parse(block[337:345])
        prefix = ""
        if fmt == "ustar":
            prefix = _cstring(block[345:500]) if block[345] else ""
        elif fmt == "star":
            prefix = _cstring(block[345:476])
            hdr.atime_ns = num.parse(block[476:488]) * _NS
        else:  # gnu: atime and ctime live where ustar keeps its prefix
            lenient = _NumberParser()
            if block[345]:
                hdr.atime_ns = lenient.parse(block[345:357]) * _NS
            if lenient.failed:
                # Go reads such blocks as written by pre-1.8 Go: a prefix, not times.
                hdr.atime_ns = None
                candidate = _cstring(block[345:500])
                if candidate.isascii():
                    prefix = candidate
        if prefix:
            hdr.name = prefix + "/" + hdr.name
    if num.failed:
        raise CorruptLayerError(f"invalid tar header for {hdr.name!r}: malformed numeric field")
    return hdr


def _block_format(block: bytes) -> str:
    checksum_field = block[148:156]
    parser = _NumberParser()
    stored = parser.parse_octal(checksum_field)  # not cached: checksums rarely repeat
    unsigned = _byte_sum(block) - sum(checksum_field) + 8 * 0x20
    if parser.failed or (stored != unsigned and stored != _signed_checksum(block, unsigned)):
        raise CorruptLayerError("invalid tar header: checksum mismatch")
    magic, version, trailer = block[257:263], block[263:265], block[508:512]
    if magic == b"ustar\x00":
        return "star" if trailer == b"tar\x00" else "ustar"
    if magic == b"ustar " and version == b" \x00":
        return "gnu"
    return "v7"


def _byte_sum(block: bytes) -> int:
    """``sum(block)`` for a 512-byte block, about eight times faster.

    Adler-32's low half is 1 + the byte sum modulo 65521. An ASCII block sums to at
    most 127 * 512 < 65521, so one call over the block is exact; otherwise each
    256-byte half sums to at most 65280, and two calls are.
    """
    adler32 = zlib.adler32
    if block.isascii():
        return (adler32(block) & 0xFFFF) - 1
    return (adler32(block[:256]) & 0xFFFF) + (adler32(block[256:]) & 0xFFFF) - 2


def _signed_checksum(block: bytes, unsigned: int) -> int:
    """The checksum some old tars wrote, summing bytes as signed chars."""
    outside = block[:148] + block[156:]
    high_bytes = len(outside) - len(outside.translate(None, _HIGH_BYTES))
    return unsigned - 256 * high_bytes


class _NumberParser:
    """Go's tar number parsing: octal, or base-256 when the high bit is set."""

    def __init__(self) -> None:
        self.failed = False

    def parse(self, field_bytes: bytes) -> int:
        # Mode, uid, gid and device fields repeat from entry to entry: remember them.
        # Only octal fields are cached, so a hit never has the base-256 bit set.
        cached = _OCTAL_CACHE.get(field_bytes)
        if cached is not None:
            return cached
        if field_bytes and field_bytes[0] & 0x80:
            negative = bool(field_bytes[0] & 0x40)
            inv = 0xFF if negative else 0
            value = 0
            for i, raw in enumerate(field_bytes):
                c = raw ^ inv
                if i == 0:
                    c &= 0x7F
                if value >> 56:
                    self.failed = True
                    return 0
                value = value << 8 | c
            if value >> 63:
                self.failed = True
                return 0
            return ~value if negative else value
        value = self.parse_octal(field_bytes)
        if not self.failed and len(field_bytes) == 8 and len(_OCTAL_CACHE) < _CACHE_ENTRIES:
            _OCTAL_CACHE[field_bytes] = value
        return value

    def parse_octal(self, field_bytes: bytes) -> int:
        # Fast path: octal digits padded with NULs or spaces, as nearly every writer
        # makes them. Go trims both ends, so the result is the same; at most 12 digits
        # cannot overflow.
        digits = field_bytes.rstrip(b" \x00")
        if len(digits) <= 12 and not digits.translate(None, _OCTAL_DIGITS):
            return int(digits, 8) if digits else 0
        text = field_bytes.strip(b" \x00")
        if not text:
            return 0
        text = text.split(b"\x00", 1)[0]
        if not text or text.translate(None, _OCTAL_DIGITS):
            self.failed = True
            return 0
        value = int(text, 8)
        if value >> 64:
            self.failed = True
            return 0
        # Go converts the uint64 to int64: values of 2**63 and above wrap negative.
        return value - (1 << 64) if value >> 63 else value


def _cstring(raw: bytes) -> str:
    end = raw.find(b"\x00")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", "surrogateescape")


def _parse_pax(data: bytes) -> dict[str, str]:
    """PAX records ("LEN KEY=VALUE\\n"), validated as Go's parsePAXRecord does."""
    records: dict[str, str] = {}
    sparse_pairs: list[str] = []
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        length = _go_parse_int(data[pos:space]) if space >= 0 else None
        if length is None or length < 5 or length > len(data) - pos or space + 1 >= pos + length:
            raise CorruptLayerError("invalid PAX record: bad length field")
        end = pos + length
        if data[end - 1] != 0x0A:
            raise CorruptLayerError("invalid PAX record: length does not match its content")
        key_bytes, sep, value_bytes = data[space + 1 : end - 1].partition(b"=")
        key, value = os.fsdecode(key_bytes), os.fsdecode(value_bytes)
        if not sep or not _valid_pax_record(key, value):
            raise CorruptLayerError(f"invalid PAX record {key!r}")
        pos = end
        if key in ("GNU.sparse.offset", "GNU.sparse.numbytes"):
            sparse_pairs.append(value)
        else:
            records[key] = value
    if sparse_pairs:
        records["GNU.sparse.map"] = ",".join(sparse_pairs)
    return records


def _valid_pax_record(key: str, value: str) -> bool:
    if not key or "=" in key:
        return False
    if key in ("path", "linkpath", "uname", "gname"):
        return "\x00" not in value
    return "\x00" not in key


def _go_parse_int(text: str | bytes) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``: optional sign, decimal digits, no spaces."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    sign = text[:1] if text[:1] in (b"+", b"-") else b""
    digits = text[len(sign) :]
    if not digits or digits.translate(None, _DECIMAL_DIGITS):
        return None
    # Leading zeros are fine; more than 19 digits after them cannot fit an int64 (and
    # Python refuses to convert strings of thousands of digits).
    digits = digits.lstrip(b"0") or b"0"
    if len(digits) > 19:
        return None
    value = int(sign + digits)
    if not -(1 << 63) <= value < (1 << 63):
        return None
    return value


def _parse_pax_time(text: str) -> int:
    seconds_text, _, fraction = text.partition(".")
    seconds = _go_parse_int(seconds_text)
    if seconds is None:
        raise CorruptLayerError(f"invalid PAX time {text!r}")
    if not fraction:
        return seconds * _NS
    if not (fraction.isascii() and fraction.isdigit()):
        raise CorruptLayerError(f"invalid PAX time {text!r}")
    nanos = int(fraction[:9].ljust(9, "0"))
    if seconds_text.startswith("-"):
        nanos = -nanos
    return seconds * _NS + nanos


def _merge_pax(hdr: TarHeader, records: dict[str, str]) -> None:
    for key, value in records.items():
        if value == "":
            continue  # Go keeps the ustar value for an empty record
        if key == "path":
            hdr.name = value
        elif key == "linkpath":
            hdr.linkname = value
        elif key in ("uid", "gid", "size"):
            number = _go_parse_int(value)
            if number is None:
                raise CorruptLayerError(f"invalid PAX record {key}={value!r}")
            setattr(hdr, key, number)
        elif key == "mtime":
            hdr.mtime_ns = _parse_pax_time(value)
        elif key == "atime":
            hdr.atime_ns = _parse_pax_time(value)
        elif key == "ctime":
            _parse_pax_time(value)  # validated as Go does, otherwise unused
    hdr.pax = records
