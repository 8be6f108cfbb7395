"""The applier's compatibility cases, checked against containerd 1.7 by several tests,
and the helpers that tell which of an unpacked tree's times no unpacker controls."""

from __future__ import annotations

import io

from layerdiff.archive import rootpath
from layerdiff.archive.tarstream import ChunkReader, TarReader
from layerdiff.compression import decompressed_chunks
from tests.support.layers import gzip, layer, zstd
from tests.support.tree import EntryInfo

BASE = layer(
    ("dir", "etc/"),
    ("file", "etc/passwd", {"data": b"root:x:0:0::/root:/bin/sh\n"}),
    ("dir", "usr/"),
    ("dir", "usr/bin/"),
    ("symlink", "bin", {"linkname": "usr/bin"}),
    ("file", "usr/bin/sh", {"data": b"#!sh", "mode": 0o755}),
    ("dir", "d/"),
    ("file", "d/a", {"data": b"a"}),
    ("dir", "d/sub/"),
    ("file", "d/sub/x", {"data": b"x"}),
)

#: Cases where containerd's overlay form is wrong, so only merged views are compared.
OVERLAY_DEVIATES = "overlay form deviates from containerd (docs/semantics.md)"

CASES: dict[str, tuple[list[bytes], str]] = {
    "ordinary root file system": ([BASE], ""),
    "gzip and zstd layers": (
        [gzip(BASE), zstd(layer(("file", "etc/hostname", {"data": b"box"})))],
        "",
    ),
    "every entry type": (
        [
            layer(
                ("dir", "dev/"),
                ("char", "dev/null", {"devmajor": 1, "devminor": 3, "mode": 0o666}),
                ("block", "dev/sda", {"devmajor": 8, "devminor": 0, "mode": 0o660}),
                ("fifo", "pipe", {"mode": 0o600}),
                ("file", "suid", {"data": b"s", "mode": 0o4755, "uid": 1000, "gid": 1000}),
                ("dir", "tmp/", {"mode": 0o1777}),
                ("dir", "shared/", {"mode": 0o2775, "gid": 50}),
                ("dir", "shared/child/"),
                ("hardlink", "suid2", {"linkname": "suid", "mode": 0o4755, "uid": 1000}),
                ("symlink", "link", {"linkname": "/does/not/exist"}),
            )
        ],
        "",
    ),
    "xattrs, PAX times and long names": (
        [
            layer(
                ("dir", "xd/", {"pax_headers": {"SCHILY.xattr.user.d": "dv"}}),
                ("symlink", "xs", {"linkname": "xd", "pax_headers": {"SCHILY.xattr.user.s": "v"}}),
                (
                    "file",
                    "xf",
                    {
                        "data": b"f",
                        "pax_headers": {
                            "SCHILY.xattr.user.k": "v",
                            "SCHILY.xattr.trusted.ignored": "t",
                            "SCHILY.xattr.user.overlay.opaque": "y",
                            "atime": "1700000000.25",
                            "mtime": "1600000000.123456789",
                        },
                    },
                ),
                ("file", "n" * 200, {"data": b"long"}),
                ("symlink", "s" * 120, {"linkname": "t" * 300}),
            )
        ],
        "",
    ),
    "times before 1970 and after 2262": (
        [
            layer(
                ("dir", "old/", {"mtime": -5}),
                ("file", "old/f", {"data": b"f", "mtime": -100}),
                ("file", "future", {"data": b"f", "pax_headers": {"mtime": "10000000000000"}}),
            )
        ],
        "",
    ),
    "whiteouts of files and directories": (
        [
            BASE,
            layer(
                ("file", "etc/.wh.passwd"),
                ("dir", "d/"),
                ("file", "d/.wh.sub"),
            ),
        ],
        "",
    ),
    "whiteouts of paths no lower layer has": (
        [BASE, layer(("file", ".wh.gone"), ("file", "new/.wh.nothing"))],
        OVERLAY_DEVIATES,
    ),
    "opaque marker last": (
        [BASE, layer(("dir", "d/"), ("file", "d/b", {"data": b"b"}), ("file", "d/.wh..wh..opq"))],
        "",
    ),
    "opaque marker first": (
        [BASE, layer(("dir", "d/"), ("file", "d/.wh..wh..opq"), ("file", "d/b", {"data": b"b"}))],
        "",
    ),
    "replacing types": (
        [
            BASE,
            layer(
                ("file", "d", {"data": b"a file now"}),
                ("dir", "etc/passwd/"),
                ("symlink", "usr/bin/sh", {"linkname": "/bin/busybox"}),
            ),
        ],
        "",
    ),
    "hardlink metadata applies to the shared inode": (
        [
            layer(
                ("file", "f", {"data": b"f", "mtime": 100}),
                ("hardlink", "g", {"linkname": "f", "mode": 0o600, "mtime": 200, "uid": 5}),
            )
        ],
        "",
    ),
    "hardlink to a file of a lower layer": (
        [BASE, layer(("hardlink", "etc/pw2", {"linkname": "etc/passwd"}))],
        OVERLAY_DEVIATES,
    ),
    "names climbing out of the root": (
        [
            layer(
                ("file", "../../escape", {"data": b"e"}),
                ("file", "/abs", {"data": b"a"}),
                ("symlink", "lnk", {"linkname": "/etc"}),
                ("file", "lnk/passwd", {"data": b"p"}),
            )
        ],
        "",
    ),
    "symlinks in parent position pointing outside": (
        [
            layer(
                ("dir", "tmp/"),
                ("dir", "a/"),
                ("symlink", "abs", {"linkname": "/../../../tmp"}),
                ("symlink", "a/rel", {"linkname": "../../../../../tmp"}),
                ("file", "abs/one", {"data": b"1"}),
                ("file", "a/rel/two", {"data": b"2"}),
            )
        ],
        "",
    ),
    "hardlink to a path outside the root": (
        [
            layer(
                ("dir", "etc/"),
                ("file", "etc/passwd", {"data": b"inside"}),
                ("hardlink", "x", {"linkname": "../../../etc/passwd"}),
            )
        ],
        "",
    ),
    "symlink replaced by a directory": (
        [
            layer(
                ("symlink", "s", {"linkname": "/etc"}),
                ("dir", "s/"),
                ("file", "s/f", {"data": b"f"}),
            )
        ],
        "",
    ),
    "usrmerge: writing through a lower layer's symlink": (
        [BASE, layer(("file", "bin/new", {"data": b"n"}))],
        OVERLAY_DEVIATES,
    ),
    "whiteout after its file in the same layer": (
        [BASE, layer(("file", "newf", {"data": b"n"}), ("file", ".wh.newf"))],
        OVERLAY_DEVIATES,
    ),
    "directory deleted and recreated in one layer": (
        [BASE, layer(("file", ".wh.d"), ("dir", "d/"), ("file", "d/n", {"data": b"n"}))],
        OVERLAY_DEVIATES,
    ),
    "opaque marker at the layer root": (
        [BASE, layer(("file", ".wh..wh..opq"), ("file", "only", {"data": b"o"}))],
        OVERLAY_DEVIATES,
    ),
    "whiteout through a lower layer's symlink": (
        [
            layer(
                ("dir", "tmp/"),
                ("file", "tmp/x", {"data": b"x"}),
                ("symlink", "l", {"linkname": "/tmp"}),
            ),
            layer(("file", "l/.wh.x")),
        ],
        OVERLAY_DEVIATES,
    ),
    "PAX global header, trailing bytes, empty layers": (
        [b"", bytes(1024), layer(("file", "f", {"data": b"f"})) + b"trailing garbage"],
        "",
    ),
    # Refused by both.
    "bare whiteout": ([layer(("file", ".wh."))], ""),
    "whiteout of ..": ([layer(("dir", "a/"), ("file", "a/.wh.."))], ""),
    "symlink loop in a parent": (
        [
            layer(
                ("symlink", "a", {"linkname": "b"}),
                ("symlink", "b", {"linkname": "a"}),
                ("file", "a/x"),
            )
        ],
        "",
    ),
    "directory whited out later in its own layer": (
        [BASE, layer(("dir", "nd/"), ("file", ".wh.nd"))],
        "",
    ),
    "hardlink to a missing file": ([layer(("hardlink", "x", {"linkname": "nope"}))], ""),
}


def entry_names(blob: bytes) -> set[str]:
    """The cleaned names a layer carries (to tell implied directories from listed ones)."""
    reader = TarReader(ChunkReader(decompressed_chunks(io.BytesIO(blob))))
    names = set()
    while (hdr := reader.next()) is not None:
        names.add(rootpath.clean(hdr.name).lstrip("/"))
    return names


def unlisted_dirs(tree: dict[str, EntryInfo], listed: set[str]) -> list[str]:
    return [p for p, e in tree.items() if e.kind == "dir" and p not in listed]


def whiteouts(tree: dict[str, EntryInfo]) -> list[str]:
    return [p for p, e in tree.items() if e.kind == "char" and e.rdev == (0, 0)]


