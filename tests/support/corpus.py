"""A named corpus of layer sequences, each with the outcome containerd 1.7 gives it.

Every case is a list of layer blobs applied in order onto an empty directory, the
outcome containerd 1.7's walking differ gives it (``"ok"``, or ``"error"`` with a pattern
that the error message must match), and a note saying why. The outcomes were decided by
reading containerd v1.7.24 (``archive/tar.go``: ``applyNaive``, ``createTarFile``,
``mkparent``, ``hardlinkRootPath``, ``validateWhiteout``), continuity's ``fs.RootPath``
and Go's ``archive/tar`` reader, and checked against the real daemon.

Three kinds of case:

- ``ordinary``: what image builders write (every entry type, xattrs, long names, times);
- ``edge``: changeset rules where appliers disagree (whiteout order, opaque markers,
  replacing types, writing through lower symlinks...);
- ``hostile``: each class of ``SECURITY-CASES.md`` that applies to applying a layer;
  ``docs/reliability.md`` (``## Adversarial corpus``) lists them with their CVEs.

Hostile cases aim at a sentinel directory. They are built for a given absolute
``outside`` path and assume the target directory is its sibling (so ``../outside``
from the target's root reaches it, as a naive extractor would follow it) and that the
target sits at least three levels below a directory the tests watch. ``CASES`` is
built for a placeholder path; ``build_cases(outside)`` builds them for a real one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from tests.support.tarbuild import (
    BLOCK,
    END,
    REG,
    REGA,
    blockdev,
    chardev,
    dir_,
    entry,
    fifo,
    gnu_longlink,
    gnu_longname,
    gzip,
    hardlink,
    header,
    layer,
    opaque,
    pad,
    pax_global,
    pax_header,
    pax_record,
    reg,
    symlink,
    whiteout,
    zstd,
)

Expect = Literal["ok", "error"]
Kind = Literal["ordinary", "edge", "hostile"]

#: The ``outside`` that ``CASES`` is built for: a path that does not exist.
PLACEHOLDER_OUTSIDE = "/nonexistent/layerdiff-outside"

#: What the sentinel directory holds; hostile cases name these.
SENTINEL_FILE = "file"
SENTINEL_DIR = "dir"
#: A second sentinel beside the target whose name starts with the target's ("root"):
#: a containment check done on strings (oras-py's commonprefix) takes it for inside.
PREFIX_SIBLING = "root-sibling"


@dataclass(frozen=True)
class Case:
    """A sequence of layers and what applying them must do."""

    name: str
    layers: list[bytes]
    expect: Expect
    note: str
    kind: Kind = "edge"
    #: When ``expect == "error"``: a regular expression the message must match
    #: (case-insensitive), naming the problem.
    error: str = ""
    #: Needs root to apply as intended (devices, ownership).
    root_only: bool = False


# -- shared layers ----------------------------------------------------------------------

#: A small root file system: /etc, /usr/bin with bin -> usr/bin (usrmerge), and a
#: directory d with files and a subdirectory, for later layers to change.
BASE = layer(
    dir_("etc"),
    reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    dir_("usr"),
    dir_("usr/bin"),
    reg("usr/bin/sh", b"#!sh", mode=0o755),
    symlink("bin", "usr/bin"),
    dir_("d"),
    reg("d/a", b"a"),
    reg("d/b", b"b"),
    dir_("d/sub"),
    reg("d/sub/x", b"x"),
)

#: Seconds that fit only in base-256 in a 12-byte field yet are before 2262 (year 2255).
BASE256_MTIME = 9_000_000_000


def _chain(prefix: str, length: int, last: str) -> list[bytes]:
    """Symlinks prefix0 -> prefix1 -> ... -> prefix{length-1} -> last."""
    links = [symlink(f"{prefix}{i}", f"{prefix}{i + 1}") for i in range(length - 1)]
    links.append(symlink(f"{prefix}{length - 1}", last))
    return links


def _hidden_entry(hidden: str) -> bytes:
    """An entry ``hidden`` (3 bytes of data) laid out as 1024 bytes of another file's data."""
    return pad(header(hidden, REG, size=3) + pad(b"hid"))


def _deep_name(total: int) -> str:
    """A relative path of 100-byte components, at least ``total`` bytes long."""
    parts = ["p" * 99 + str(i % 10) for i in range(total // 101 + 1)]
    return "/".join(parts) + "/f"


def _pax_bomb(count: int) -> Iterator[bytes]:
    """``count`` PAX headers in a row, each superseding the last, with no entry after."""
    for i in range(count):
        yield pax_header({"path": f"never-{i}", "comment": "c" * 400})


def _hardlink_chain(prefix: str, length: int, first: str) -> list[bytes]:
    """Hard links prefix0 -> first, prefix1 -> prefix0, ... (each names the one before)."""
    names = [first] + [f"{prefix}{i}" for i in range(length)]
    return [hardlink(names[i + 1], names[i]) for i in range(length)]


def _nested_dirs(levels: int, width: int) -> list[bytes]:
    """One directory entry per level, each named from the root: c/c/c/..., ``width``-byte c."""
    component = "c" * width
    return [dir_("/".join([component] * (i + 1))) for i in range(levels)]


def _realpath_overflow(levels: int, escape: str) -> list[bytes]:
    """Python tarfile CVE-2025-4517's layout: short links whose real path passes PATH_MAX.

    Level i holds a 200-byte directory and a link ``s<i>`` to it, named through the
    links before it, so that ``s0/s1/...`` stays short while the directories it
    resolves to grow by 201 bytes a level. A final 254-byte link there climbs back to
    the top, and ``esc`` goes through it to ``escape``: an extractor whose realpath
    stops resolving past PATH_MAX would check ``esc`` lexically and follow it out.
    """
    component = "d" * 200
    entries: list[bytes] = []
    short = ""
    for i in range(levels):
        entries.append(dir_(f"{short}{component}"))
        entries.append(symlink(f"{short}s{i}", component))
        short = f"{short}s{i}/"
    climb = "l" * 254
    entries.append(symlink(f"{short}{climb}", "/".join([".."] * levels)))
    entries.append(symlink("esc", f"{short}{climb}/{escape}"))
    entries.append(reg(f"esc/{SENTINEL_FILE}", b"pwned"))
    return entries


# -- the cases ----------------------------------------------------------------------------


def _ordinary() -> list[Case]:
    return [
        Case(
            "root file system",
            [BASE],
            "ok",
            "directories, files, a relative symlink, as image builders write them",
            kind="ordinary",
        ),
        Case(
            "every entry type",
            [
                layer(
                    dir_("dev"),
                    chardev("dev/null", 1, 3, mode=0o666),
                    blockdev("dev/loop0", 7, 0, mode=0o660, gid=6),
                    fifo("run.pipe", mode=0o600),
                    reg("f", b"data"),
                    hardlink("f2", "f"),
                    symlink("dangling", "/does/not/exist"),
                )
            ],
            "ok",
            "devices need root (containerd skips them only inside a user namespace)",
            kind="ordinary",
            root_only=True,
        ),
        Case(
            "setuid, setgid and sticky bits with owners",
            [
                layer(
                    reg("suid", b"s", mode=0o4755, uid=1000, gid=1000),
                    reg("sgid", b"g", mode=0o2711, gid=50),
                    dir_("tmp", mode=0o1777),
                    dir_("shared", mode=0o2775, gid=50),
                    reg("shared/child", b"c", uid=7, gid=8),
                )
            ],
            "ok",
            "mode is set after chown, which clears setuid/setgid (createTarFile: lchown, "
            "then lchmod)",
            kind="ordinary",
            root_only=True,
        ),
        Case(
            "xattrs on files, directories and symlinks",
            [
                layer(
                    dir_("xd", pax={"SCHILY.xattr.user.dir": "dv"}),
                    reg("xd/f", b"f", pax={"SCHILY.xattr.user.k": "v", "SCHILY.xattr.user.e": ""}),
                    symlink("xs", "xd", pax={"SCHILY.xattr.user.s": "v"}),
                    fifo("xp", pax={"SCHILY.xattr.user.p": "v"}),
                )
            ],
            "ok",
            "user.* on a symlink or fifo fails with EPERM and is only logged (createTarFile); "
            "an empty PAX value is a valid xattr value",
            kind="ordinary",
        ),
        Case(
            "nanosecond mtimes and PAX access times",
            [
                layer(
                    dir_("t", pax={"mtime": "1500000000.000000001"}),
                    reg(
                        "t/f", b"f", pax={"mtime": "1600000000.123456789", "atime": "1700000000.5"}
                    ),
                    reg("t/g", b"g", pax={"mtime": "1600000000.9999999999", "atime": "1000"}),
                    symlink("t/l", "f", pax={"mtime": "1400000000.25"}),
                )
            ],
            "ok",
            "fractions past 9 digits are cut; an atime before the mtime becomes the mtime "
            "(latestTime); symlink times are set without following",
            kind="ordinary",
        ),
        Case(
            "long names and link targets via PAX",
            [
                layer(
                    dir_("n" * 150),
                    reg("n" * 150 + "/" + "m" * 200, b"long"),
                    symlink("s" * 120, "t" * 300),
                    hardlink("h" * 130, "n" * 150 + "/" + "m" * 200),
                )
            ],
            "ok",
            "PAX path/linkpath records replace the 100-byte header fields",
            kind="ordinary",
        ),
        Case(
            "long names and link targets via GNU L and K records",
            [
                layer(
                    gnu_longname("g" * 150 + "/" + "file" * 40),
                    reg("truncated-in-header", b"gnu"),
                    gnu_longname("k" * 180),
                    gnu_longlink("target/" * 30),
                    symlink("also-truncated", "x"),
                )
            ],
            "ok",
            "GNU long-name records name the next entry; its parent directories are implied",
            kind="ordinary",
        ),
        Case(
            "ustar prefix field",
            [layer(entry("file", REG, b"p", prefix="some/deep/prefix"))],
            "ok",
            "a ustar name is prefix + '/' + name",
            kind="ordinary",
        ),
        Case(
            "unicode names",
            [layer(dir_("ünïcödé"), reg("ünïcödé/文件", b"u"), reg("emoji-🙂", b"e"))],
            "ok",
            "names are bytes; UTF-8 passes through",
            kind="ordinary",
        ),
        Case(
            "gzip and zstd layers",
            [gzip(BASE), zstd(layer(reg("etc/hostname", b"box")))],
            "ok",
            "compression is detected from magic bytes",
            kind="ordinary",
        ),
        Case(
            "base-256 numbers",
            [layer(reg("big", b"b", uid=10_000_000, gid=20_000_000, mtime=BASE256_MTIME))],
            "ok",
            "numbers too big for octal are GNU base-256; an mtime in 2255 is before Go's "
            "maxTime and kept",
            kind="ordinary",
            root_only=True,
        ),
        Case(
            "v7 headers and the old regular-file type",
            [
                layer(
                    header("olddir/", REGA, mode=0o755, magic="v7"),
                    header("olddir/oldfile", REGA, mode=0o600, size=2, magic="v7") + pad(b"v7"),
                )
            ],
            "ok",
            "typeflag NUL is a directory when the name ends in '/', else a file (Go's reader)",
            kind="ordinary",
        ),
        Case(
            "old tars' signed checksums",
            [layer(reg("é-signed", b"s", signed_checksum=True))],
            "ok",
            "Go accepts a checksum computed over signed chars",
            kind="ordinary",
        ),
        Case(
            "GNU format headers with access times",
            [layer(reg("gnu-file", b"g", magic="gnu", atime=1_700_000_000))],
            "ok",
            "GNU headers carry atime where ustar has its prefix",
            kind="ordinary",
        ),
    ]


def _edge() -> list[Case]:
    return [
        Case(
            "whiteout after its file in the same layer",
            [BASE, layer(reg("new", b"n"), whiteout("new"), reg("d/a", b"A2"), whiteout("d/a"))],
            "ok",
            "containerd deletes the layer's own file (applyNaive removes whatever the "
            "whiteout names); the image-spec says a whiteout hides lower layers only",
        ),
        Case(
            "whiteout before its file in the same layer",
            [BASE, layer(whiteout("d/a"), reg("d/a", b"A2"))],
            "ok",
            "the lower file goes, the new one stays",
        ),
        Case(
            "opaque marker first among its directory's entries",
            [BASE, layer(dir_("d"), opaque("d"), reg("d/n", b"n"))],
            "ok",
            "lower children are gone, the layer's own stay",
        ),
        Case(
            "opaque marker in the middle of its directory's entries",
            [BASE, layer(dir_("d"), reg("d/m", b"m"), opaque("d"), reg("d/n", b"n"))],
            "ok",
            "entries before the marker are kept: applyNaive remembers unpacked paths",
        ),
        Case(
            "opaque marker last among its directory's entries",
            [
                BASE,
                layer(dir_("d"), reg("d/m", b"m"), dir_("d/sub"), reg("d/n", b"n"), opaque("d")),
            ],
            "ok",
            "the layer's d/sub entry is kept but its lower child d/sub/x is removed (the walk "
            "descends into kept directories)",
        ),
        Case(
            "opaque marker without a directory entry",
            [BASE, layer(opaque("d"), reg("d/n", b"n"))],
            "ok",
            "the directory itself keeps its lower metadata",
        ),
        Case(
            "opaque marker removes the layer's files under a directory it did not list",
            [BASE, layer(reg("d/sub/new", b"n"), opaque("d"))],
            "ok",
            "surprising: d/sub was never an entry, so applyNaive's opaque walk removes it with "
            "the layer's own d/sub/new (unpackedPaths holds only entries)",
        ),
        Case(
            "opaque marker at the layer root",
            [BASE, layer(reg("early", b"e"), opaque(""), reg("late", b"l"))],
            "ok",
            "everything lower in the root goes; the layer's entries stay",
        ),
        Case(
            "opaque marker for a directory no lower layer has",
            [BASE, layer(opaque("fresh"), reg("fresh/f", b"f"))],
            "ok",
            "the marker's parent is created (mkparent) before the marker is handled",
        ),
        Case(
            "directory deleted and recreated in one layer",
            [BASE, layer(whiteout("d"), dir_("d", mode=0o700), reg("d/n", b"n"))],
            "ok",
            "the old children do not come back",
        ),
        Case(
            "directory over directory merges",
            [BASE, layer(dir_("d", mode=0o750, uid=7, gid=8, mtime=1234), reg("d/c", b"c"))],
            "ok",
            "a directory meeting a directory takes the new metadata and keeps its children",
            root_only=True,
        ),
        Case(
            "file replaces a directory",
            [BASE, layer(reg("d", b"now a file"))],
            "ok",
            "RemoveAll of the old tree, then the file",
        ),
        Case(
            "directory replaces a file",
            [BASE, layer(dir_("etc/passwd"), reg("etc/passwd/x", b"x"))],
            "ok",
            "the file is removed",
        ),
        Case(
            "symlink replaced by a directory",
            [BASE, layer(dir_("bin"), reg("bin/own", b"o"))],
            "ok",
            "the entry's own name is never resolved through a symlink (Lstat), so usr/bin is "
            "untouched",
        ),
        Case(
            "usrmerge: writing through a lower layer's relative symlink",
            [BASE, layer(reg("bin/ls", b"ls", mode=0o755))],
            "ok",
            "the parent bin/ is resolved with fs.RootPath: the file lands in usr/bin",
        ),
        Case(
            "usrmerge: writing through a lower layer's absolute symlink",
            [
                layer(dir_("usr"), dir_("usr/lib"), symlink("lib", "/usr/lib")),
                layer(reg("lib/libc.so", b"c")),
            ],
            "ok",
            "absolute targets are resolved from the target root",
        ),
        Case(
            "hardlink to a file of a lower layer",
            [BASE, layer(hardlink("etc/passwd2", "etc/passwd"))],
            "ok",
            "the link shares the lower file's inode",
        ),
        Case(
            "hardlink to a symlink links the symlink itself",
            [layer(symlink("s", "target"), hardlink("h", "s"))],
            "ok",
            "link(2) does not follow a final symlink (hardlinkRootPath's NOTE)",
        ),
        Case(
            "hardlink to a file later replaced keeps the old content",
            [layer(reg("f", b"old"), hardlink("g", "f"), reg("f", b"new"))],
            "ok",
            "replacing f unlinks it; g keeps the inode",
        ),
        Case(
            "hardlink through a directory symlink inside the root",
            [layer(dir_("data"), reg("data/f", b"f"), symlink("l", "/data"), hardlink("h", "l/f"))],
            "ok",
            "the link target's parent is resolved with fs.RootPath (hardlinkRootPath)",
        ),
        Case(
            "writing through a symlink whose target passes through another symlink",
            [
                layer(
                    dir_("real"),
                    dir_("real/m"),
                    symlink("l", "real"),
                    symlink("a", "l/m"),
                    reg("a/b/f", b"f"),
                )
            ],
            "ok",
            "a -> l/m with l -> real: continuity's walkLink lstat()s <root>/l/m/b, and the "
            "kernel follows l on the way; the file lands in real/m/b/f",
        ),
        Case(
            "usrmerge: a link through /lib, then a subdirectory through it",
            [
                layer(
                    dir_("usr"),
                    dir_("usr/lib"),
                    dir_("usr/lib/foo"),
                    symlink("lib", "usr/lib"),
                    dir_("usr/share"),
                    symlink("usr/share/foo", "/lib/foo"),
                    reg("usr/share/foo/sub/bar", b"x"),
                )
            ],
            "ok",
            "as above, the shape Debian packages take on a merged /usr: the file lands in "
            "usr/lib/foo/sub/bar",
        ),
        Case(
            "whiteouts of paths that do not exist",
            [BASE, layer(whiteout("ghost"), whiteout("nodir/ghost"))],
            "ok",
            "surprising: the missing parent nodir/ is created (applyNaive calls mkparent "
            "before convertWhiteout)",
        ),
        Case(
            "parent directories not in the layer",
            [layer(reg("a/b/c/f", b"f"))],
            "ok",
            "mkparent creates them with mode 0755",
        ),
        Case(
            "hardlink header whose mode, owner and mtime differ from its target's",
            [
                layer(
                    reg("f", b"f", mode=0o644, uid=1, gid=1, mtime=100),
                    hardlink("g", "f", mode=0o600, uid=2, gid=3, mtime=200),
                )
            ],
            "ok",
            "surprising: createTarFile applies a link entry's owner, mode and times to the "
            "shared inode, so they override the target's own",
            root_only=True,
        ),
        Case(
            "times before 1970 and after 2262",
            [
                layer(
                    dir_("old", mtime=-5),
                    reg("old/f", b"f", mtime=-100),
                    reg("frac", b"f", pax={"mtime": "-1.5"}),
                    reg("future", b"f", pax={"mtime": "10000000000000"}),
                )
            ],
            "ok",
            "boundTime (archive/time.go) turns times before 1970 or after Go's maxTime into "
            "the epoch",
        ),
        Case(
            "trusted.* and user.overlay.* xattrs in a layer",
            [
                layer(
                    dir_("o", pax={"SCHILY.xattr.user.overlay.opaque": "y"}),
                    reg(
                        "f",
                        b"f",
                        pax={
                            "SCHILY.xattr.trusted.overlay.opaque": "y",
                            "SCHILY.xattr.trusted.other": "t",
                            "SCHILY.xattr.user.overlay.origin": "u",
                            "SCHILY.xattr.user.k": "v",
                        },
                    ),
                )
            ],
            "ok",
            "containerd's setxattr (tar_unix.go) refuses trusted.* with ENOTSUP, which "
            "createTarFile only logs; user.overlay.* is an ordinary user xattr to it",
        ),
        Case(
            "PAX global header",
            [layer(pax_global({"comment": "global"}), reg("f", b"f"))],
            "ok",
            "a global header creates nothing",
        ),
        Case(
            "PAX global header named like an existing path",
            [BASE, layer(pax_global({"comment": "g"}, name="etc/passwd"), pax_global({}, "new/g"))],
            "ok",
            "surprising: applyNaive removes what exists at the entry's name (and mkparent "
            "creates its parents) before createTarFile ignores the global header",
        ),
        Case(
            "trailing bytes after the end of the archive",
            [layer(reg("f", b"f"), trailing=b"trailing garbage" * 100)],
            "ok",
            "the tar reader stops at the end blocks; the differ reads the rest for the digest",
        ),
        Case("empty layer", [b""], "ok", "zero bytes: an empty tar stream"),
        Case("only the end-of-archive blocks", [END], "ok", "an empty archive"),
        Case(
            "one zero block and the end of the stream",
            [bytes(BLOCK)],
            "ok",
            "Go's reader takes an EOF in place of the second zero block as the end",
        ),
        Case(
            "no end-of-archive blocks",
            [layer(reg("f", b"f"), end=False)],
            "ok",
            "EOF on a header boundary ends the archive",
        ),
        Case(
            "the stream ends inside the padding of the last entry",
            [layer(reg("f", b"12345"), end=False)[: BLOCK + 100]],
            "ok",
            "Go's reader reads padding with tryReadFull, which takes a short read at EOF as "
            "the end of the archive",
        ),
        Case(
            "gzip stream of several members",
            [gzip(BASE[:1536]) + gzip(BASE[1536:])],
            "ok",
            "Go's gzip reader is multistream: members are one stream",
        ),
        Case(
            "zstd stream of several frames",
            [zstd(BASE[:1536]) + zstd(BASE[1536:])],
            "ok",
            "zstd frames are one stream",
        ),
        Case(
            "entries for the root itself are ignored",
            [layer(dir_("./", mode=0o700, mtime=5), dir_("/", mode=0o700), reg("f", b"f"))],
            "ok",
            "a name that resolves to the root is skipped (applyNaive: 'resolved to root'), "
            "so the target's own mode and times are kept",
        ),
        Case(
            "the same path twice in one layer",
            [layer(reg("f", b"1"), reg("f", b"2"), dir_("g"), reg("g", b"file"))],
            "ok",
            "the last entry wins",
        ),
        Case(
            "header-only entries ignore their size field",
            [
                layer(
                    dir_("d", size=1024),
                    symlink("s", "d", size=BLOCK),
                    reg("after", b"a"),
                )
            ],
            "ok",
            "Go reads no data for links, devices, directories and fifos, whatever the size",
        ),
        Case(
            "a directory replaced by a symlink in the same layer",
            [layer(dir_("e", mtime=100), dir_("d", mtime=200), symlink("d", "e"))],
            "ok",
            "surprising: applyNaive sets directory times at the end through "
            "fs.RootPath(root, hdr.Name), which follows d -> e: e gets d's mtime",
        ),
        Case(
            "a directory deleted later in its own layer",
            [BASE, layer(dir_("nd"), whiteout("nd"))],
            "error",
            "applyNaive's final chtimes of nd finds no such path",
            error=r"no such file|not exist",
        ),
        Case(
            "a PAX header and then the end of the archive",
            [layer(pax_header({"path": "never"}))],
            "ok",
            "Go's reader returns io.EOF when the stream ends after extended headers",
        ),
        Case(
            "a PAX header of exactly 1 MiB",
            # One record: "1048576 comment=" (16 bytes), the value, "\n".
            [layer(reg("f", b"f", pax=[("comment", "c" * ((1 << 20) - 17))]))],
            "ok",
            "Go's maxSpecialFileSize is 1 MiB, inclusive",
        ),
        Case(
            "a file with socket mode bits",
            [layer(reg("sock", b"", mode=0o140755), reg("after", b"a"))],
            "ok",
            "containerd makes a regular file of it (os.OpenFile drops the type bits); "
            "layerdiff skips it (docs/semantics.md)",
        ),
    ]


def _hostile(outside: str) -> list[Case]:
    sentinel_file = f"{outside}/{SENTINEL_FILE}"
    sentinel_dir = f"{outside}/{SENTINEL_DIR}"
    relative = "../outside"  # from the target's root, where a naive extractor would go
    return [
        Case(
            "names climbing out with ..",
            [layer(reg("../../../escape", b"e"), reg("a/../../../../escape2", b"e"))],
            "ok",
            "names are cleaned and resolved as if the root were /: both land in the root",
            kind="hostile",
        ),
        Case(
            "absolute names aimed at the sentinel",
            [
                layer(
                    reg(f"{outside}/../escape-abs", b"a"),
                    reg(sentinel_file, b"pwned"),
                    dir_(sentinel_dir, mode=0o777),
                    reg(f"{outside}/new", b"pwned"),
                )
            ],
            "ok",
            "an absolute name is relative to the target root ('..' in it stops there too)",
            kind="hostile",
        ),
        Case(
            "symlink to the sentinel, then entries through it",
            [
                layer(
                    symlink("l", outside),
                    reg(f"l/{SENTINEL_FILE}", b"pwned"),
                    reg("l/new", b"pwned"),
                    dir_(f"l/{SENTINEL_DIR}", mode=0o777, mtime=0),
                )
            ],
            "ok",
            "CVE-2014-9356 class: the parent l/ resolves to <root><outside>, created inside",
            kind="hostile",
        ),
        Case(
            "relative symlinks climbing out, then entries through them",
            [
                layer(
                    symlink("l", relative),
                    dir_("a"),
                    symlink("a/up", "../../outside"),
                    symlink("a/deep", "../../../../../../../../outside"),
                    reg(f"l/{SENTINEL_FILE}", b"pwned"),
                    reg("a/up/new", b"pwned"),
                    reg("a/deep/new2", b"pwned"),
                )
            ],
            "ok",
            "'..' in a link target never climbs above the root (fs.RootPath)",
            kind="hostile",
        ),
        Case(
            "paths aimed at a sibling whose name starts with the target's",
            [
                layer(
                    reg(f"../{PREFIX_SIBLING}/{SENTINEL_FILE}", b"pwned"),
                    reg(f"{outside}/../{PREFIX_SIBLING}/new", b"pwned"),
                    symlink("s", f"../{PREFIX_SIBLING}"),
                    reg(f"s/{SENTINEL_FILE}", b"pwned"),
                    hardlink("h", f"../{PREFIX_SIBLING}/{SENTINEL_FILE}"),
                )
            ],
            "ok",
            "moby CVE-2026-17106 / oras-py class: every name resolves inside the root, to "
            "<root>/root-sibling, and the link joins the file written there",
            kind="hostile",
        ),
        Case(
            "symlink in a parent position from an earlier layer",
            [layer(symlink("etc", outside)), layer(reg(f"etc/{SENTINEL_FILE}", b"pwned"))],
            "ok",
            "links from lower layers are followed inside the root too",
            kind="hostile",
        ),
        Case(
            "symlinks to /. and a symlink named /.",
            [
                layer(
                    symlink("/.", outside),
                    symlink(".", relative),
                    symlink("self", "/."),
                    reg(f"self{sentinel_file}", b"pwned"),
                    reg("after", b"a"),
                )
            ],
            "ok",
            "umoci CVE-2021-29136 class: an entry naming the root is skipped, so the root "
            "never becomes a link; self/ resolves to the root",
            kind="hostile",
        ),
        Case(
            "symlink to /proc/self/root",
            [layer(symlink("p", "/proc/self/root"), reg(f"p{sentinel_file}", b"pwned"))],
            "ok",
            "a magic link's target is just a path inside the root",
            kind="hostile",
        ),
        Case(
            "symlink chain leading outside",
            [layer(*_chain("c", 5, outside), reg(f"c0/{SENTINEL_FILE}", b"pwned"))],
            "ok",
            "each link of the chain is resolved inside the root",
            kind="hostile",
        ),
        Case(
            "symlink chain of 200 links",
            [layer(dir_("real"), *_chain("c", 200, "real"), reg("c0/f", b"f"))],
            "ok",
            "fs.RootPath follows up to 255 links",
            kind="hostile",
        ),
        Case(
            "symlink chain of 300 links",
            [layer(dir_("real"), *_chain("c", 300, "real"), reg("c0/f", b"f"))],
            "error",
            "fs.RootPath gives up after 255 links",
            kind="hostile",
            error=r"too many (levels of )?(symbolic )?links",
        ),
        Case(
            "symlink loop in a parent position",
            [layer(symlink("a", "b"), symlink("b", "a"), reg("a/x", b"x"))],
            "error",
            "must end, not hang",
            kind="hostile",
            error=r"too many (levels of )?(symbolic )?links",
        ),
        Case(
            "symlink to itself in a parent position",
            [layer(symlink("s", "s"), reg("s/x", b"x"))],
            "error",
            "must end, not hang",
            kind="hostile",
            error=r"too many (levels of )?(symbolic )?links",
        ),
        Case(
            "symlink loop through ..",
            [layer(dir_("a"), symlink("a/l", "../a/l"), reg("a/l/x", b"x"))],
            "error",
            "must end, not hang",
            kind="hostile",
            error=r"too many (levels of )?(symbolic )?links",
        ),
        Case(
            "symlinks that expand exponentially",
            [
                layer(
                    *[symlink(f"e{i}", f"e{i + 1}/e{i + 1}") for i in range(40)],
                    dir_("e40"),
                    reg("e0/x", b"x"),
                )
            ],
            "error",
            "a billion-laughs of links must end quickly. containerd accepts it: continuity's "
            "walkLink lstat()s <root>/e2/e2/e1 and the like, letting the kernel follow the "
            "links inside (relative) ones, and the file lands somewhere under e40/ that "
            "depends on the kernel's own link limit. layerdiff follows those inner links "
            "itself, inside the root, counting them with the others: over 255, it refuses",
            kind="hostile",
            error=r"too many levels of symbolic links",
        ),
        Case(
            "hardlink to an absolute path outside",
            [layer(hardlink("h", sentinel_file))],
            "error",
            "the link target is resolved inside the root, where it does not exist",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "hardlink climbing to ../../etc/passwd",
            [
                layer(
                    dir_("etc"),
                    reg("etc/passwd", b"inside"),
                    hardlink("h", "../../../../etc/passwd"),
                )
            ],
            "ok",
            "the link target's '..' stop at the root: h links the layer's own etc/passwd",
            kind="hostile",
        ),
        Case(
            "hardlink climbing to the sentinel",
            [layer(hardlink("h", f"{relative}/{SENTINEL_FILE}"))],
            "error",
            "oras-go GHSA-8xwf-rjm4-xvhv class: resolved inside the root, not against the "
            "working directory",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "hardlink through a symlinked directory pointing outside",
            [layer(symlink("l", outside), hardlink("h", f"l/{SENTINEL_FILE}"))],
            "error",
            "the link target's parent is resolved inside the root (hardlinkRootPath)",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "hardlink through a relative symlink pointing outside",
            [layer(symlink("l", relative), hardlink("h", f"l/{SENTINEL_FILE}"))],
            "error",
            "as above, with a relative link",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "hardlink to a symlink pointing outside, with metadata",
            [
                layer(
                    symlink("s", sentinel_file),
                    hardlink(
                        "h",
                        "s",
                        mode=0o777,
                        mtime=0,
                        uid=1234,
                        gid=1234,
                        pax={"SCHILY.xattr.user.evil": "1"},
                    ),
                )
            ],
            "ok",
            "CVE-2021-32760 class: the link's mode, times and owner go to the symlink, never "
            "through it (lchmod skips symlinks; chtimes and chown do not follow)",
            kind="hostile",
        ),
        Case(
            "symlink pointing outside with mode, times and xattrs",
            [
                layer(
                    symlink(
                        "s",
                        sentinel_file,
                        mode=0o777,
                        mtime=0,
                        uid=4321,
                        pax={"SCHILY.xattr.user.evil": "1", "atime": "0"},
                    ),
                    symlink("sd", sentinel_dir, mode=0o700, mtime=0),
                )
            ],
            "ok",
            "metadata of a symlink entry never reaches the link's target",
            kind="hostile",
        ),
        Case(
            "entries replacing symlinks that point outside",
            [
                layer(
                    symlink("f", sentinel_file),
                    symlink("d", sentinel_dir),
                    symlink("p", sentinel_file),
                ),
                layer(
                    reg("f", b"pwned", mode=0o777),
                    dir_("d", mode=0o777, mtime=0),
                    reg("d/new", b"n"),
                    fifo("p", mode=0o777),
                ),
            ],
            "ok",
            "an existing path is Lstat-ed and removed, never written through",
            kind="hostile",
        ),
        Case(
            "symlink replaced by a directory mid-layer",
            [layer(symlink("s", outside), dir_("s"), reg(f"s/{SENTINEL_FILE}", b"pwned"))],
            "ok",
            "the directory entry replaces the link; s/ is a real directory",
            kind="hostile",
        ),
        Case(
            "directory replaced by a symlink mid-layer, then a file through it",
            [layer(dir_("d", mtime=0), symlink("d", outside), reg(f"d/{SENTINEL_FILE}", b"pwned"))],
            "ok",
            "d/ resolves to <root><outside>, which mkparent creates; the deferred time of d "
            "lands there too (inside the root)",
            kind="hostile",
        ),
        Case(
            "directory replaced by a symlink to outside: its deferred time",
            [layer(dir_("d", mtime=0), symlink("d", outside))],
            "error",
            "applyNaive's final chtimes resolves d through the link, inside the root, where "
            "nothing exists: the apply fails and the sentinel's times are untouched",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "directory replaced by a relative symlink to outside: its deferred time",
            [layer(dir_("d", mtime=0), symlink("d", relative))],
            "error",
            "as above, with a relative link",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "bare whiteout .wh.",
            [layer(dir_("a"), reg("a/.wh."))],
            "error",
            "image-spec#1314: validateWhiteout refuses a whiteout naming its own directory",
            kind="hostile",
            error=r"invalid whiteout name",
        ),
        Case(
            "whiteout of . (.wh..)",
            [layer(dir_("a"), reg("a/.wh.."))],
            "error",
            "validateWhiteout: the named path is not under the whiteout's directory",
            kind="hostile",
            error=r"invalid whiteout name",
        ),
        Case(
            "whiteout of .. (.wh...)",
            [layer(dir_("a"), reg("a/x", b"x"), reg("a/.wh..."))],
            "error",
            "validateWhiteout: it would remove the parent directory",
            kind="hostile",
            error=r"invalid whiteout name",
        ),
        Case(
            "whiteout of .. at the layer root",
            [layer(reg(".wh..."))],
            "error",
            "validateWhiteout: it would remove the target's parent",
            kind="hostile",
            error=r"invalid whiteout name",
        ),
        Case(
            "whiteout climbing out with ..",
            [layer(reg("../.wh.outside"), reg("x/../../.wh.outside"))],
            "ok",
            "the whiteout's directory is resolved inside the root: it removes <root>/outside "
            "(which does not exist), not the sentinel beside the root",
            kind="hostile",
        ),
        Case(
            "whiteouts through a symlink pointing outside",
            [
                layer(symlink("l", outside), symlink("r", relative)),
                layer(
                    whiteout(f"l/{SENTINEL_FILE}"),
                    whiteout(f"l/{SENTINEL_DIR}"),
                    whiteout(f"r/{SENTINEL_FILE}"),
                ),
            ],
            "ok",
            "the whiteout's directory is resolved inside the root",
            kind="hostile",
        ),
        Case(
            "opaque marker through a symlink pointing outside",
            [layer(symlink("l", outside), symlink("r", relative)), layer(opaque("l"), opaque("r"))],
            "ok",
            "the marker's directory is resolved (and created) inside the root",
            kind="hostile",
        ),
        Case(
            "whiteout of a symlink pointing outside removes only the link",
            [layer(symlink("l", outside)), layer(whiteout("l"))],
            "ok",
            "RemoveAll does not follow a final symlink",
            kind="hostile",
        ),
        Case(
            "PAX size smaller than the header's",
            [
                layer(
                    pax_header({"size": "0"}),
                    header("carrier", REG, size=2 * BLOCK),
                    _hidden_entry("smuggled"),
                )
            ],
            "ok",
            "tokio-tar CVE-2025-62518 class: Go takes the PAX size, so the 'data' is read as "
            "headers and 'smuggled' is an entry; carrier is empty",
            kind="hostile",
        ),
        Case(
            "PAX size larger than the header's",
            [
                layer(
                    pax_header({"size": str(2 * BLOCK)}),
                    header("carrier", REG, size=0),
                    _hidden_entry("hidden"),
                )
            ],
            "ok",
            "Go takes the PAX size: carrier holds 1024 bytes and 'hidden' is no entry",
            kind="hostile",
        ),
        Case(
            "PAX size on a directory is ignored",
            [layer(dir_("d", pax={"size": str(BLOCK)}), reg("after", b"a"))],
            "ok",
            "directories carry no data whatever their size",
            kind="hostile",
        ),
        Case(
            "PAX header over 1 MiB",
            [layer(reg("f", b"f", pax=[("comment", "c" * (1 << 20))]))],
            "error",
            "Go refuses extended headers over maxSpecialFileSize (1 MiB)",
            kind="hostile",
            error=r"(too long|exceeds|limit)",
        ),
        Case(
            "GNU long name over 1 MiB",
            [layer(gnu_longname("n" * (1 << 20)), reg("f", b"f"))],
            "error",
            "Go refuses GNU long names over maxSpecialFileSize (1 MiB)",
            kind="hostile",
            error=r"(too long|exceeds|limit)",
        ),
        Case(
            "negative size on a regular file",
            [layer(header("neg", REG, size=-1), reg("after", b"a"))],
            "error",
            "Python tarfile CVE-2025-8194 class: Go refuses a negative data size",
            kind="hostile",
            error=r"(negative|invalid tar header)",
        ),
        Case(
            "negative size in a PAX record",
            [layer(pax_header({"size": "-512"}), header("neg", REG), reg("after", b"a"))],
            "error",
            "as above, from a PAX record",
            kind="hostile",
            error=r"(negative|invalid tar header)",
        ),
        Case(
            "negative size on a directory is ignored",
            [layer(dir_("d", size=-1), reg("after", b"a"))],
            "ok",
            "Go checks the size of data-bearing types only",
            kind="hostile",
        ),
        Case(
            "size of 2**62 on a regular file",
            [layer(header("huge", REG, size=1 << 62) + b"x" * BLOCK)],
            "error",
            "the stream ends long before: truncated, without reserving memory for it",
            kind="hostile",
            error=r"(truncated|unexpected end)",
        ),
        Case(
            "size field with a non-octal digit",
            [layer(header("bad", REG, size=b"0000000009\x00"))],
            "error",
            "Go's parseOctal sets ErrHeader",
            kind="hostile",
            error=r"invalid tar header|malformed",
        ),
        Case(
            "base-256 number overflowing 63 bits",
            [layer(reg("f", b"f", mtime=b"\x80" + b"\xff" * 11))],
            "error",
            "Go's parseNumeric reports the overflow as ErrHeader",
            kind="hostile",
            error=r"invalid tar header|malformed",
        ),
        Case(
            "negative mtime in base-256",
            [layer(reg("f", b"f", mtime=-(1 << 40)))],
            "ok",
            "a time before 1970 becomes the epoch (boundTime)",
            kind="hostile",
        ),
        Case(
            "uid and gid beyond 32 bits",
            [layer(reg("f", b"f", pax={"uid": str((1 << 32) + 5), "gid": str((1 << 33) + 6)}))],
            "ok",
            "Go hands the int to chown(2), which keeps the low 32 bits: 5:6",
            kind="hostile",
            root_only=True,
        ),
        Case(
            "bad header checksum",
            [layer(reg("f", b"f", checksum=1))],
            "error",
            "Go's reader refuses the block",
            kind="hostile",
            error=r"checksum|invalid tar header",
        ),
        Case(
            "checksum field that is not octal",
            [layer(reg("f", b"f", checksum=b"zzzzzz\x00 "))],
            "error",
            "Go's reader refuses the block",
            kind="hostile",
            error=r"checksum|invalid tar header",
        ),
        Case(
            "truncated in the middle of a header",
            [layer(reg("f", b"f"), end=False) + reg("g", b"g")[:300]],
            "error",
            "io.ErrUnexpectedEOF",
            kind="hostile",
            error=r"truncated|unexpected end",
        ),
        Case(
            "truncated in the middle of file data",
            [reg("f", b"x" * 2000)[: BLOCK + 1000]],
            "error",
            "io.ErrUnexpectedEOF",
            kind="hostile",
            error=r"truncated|unexpected end",
        ),
        Case(
            "truncated in the middle of a PAX header's data",
            [pax_header({"path": "p" * 600})[: BLOCK + 300]],
            "error",
            "io.ErrUnexpectedEOF",
            kind="hostile",
            error=r"truncated|unexpected end",
        ),
        Case(
            "a zero block followed by a header",
            [bytes(BLOCK) + layer(reg("f", b"f"))],
            "error",
            "Go's reader: a lone zero block must be followed by another",
            kind="hostile",
            error=r"invalid tar header|zero block",
        ),
        Case(
            "corrupt gzip data",
            [_corrupt(gzip(BASE))],
            "error",
            "the deflate stream or its CRC fails",
            kind="hostile",
            error=r"gzip",
        ),
        Case(
            "truncated gzip",
            [gzip(BASE)[:-30]],
            "error",
            "unexpected EOF in the compressed stream",
            kind="hostile",
            error=r"gzip",
        ),
        Case(
            "gzip followed by garbage",
            [gzip(BASE) + b"garbage after the member"],
            "error",
            "Go's multistream gzip reader wants another member header",
            kind="hostile",
            error=r"gzip",
        ),
        Case(
            "corrupt zstd data",
            [_corrupt(zstd(BASE))],
            "error",
            "the zstd decoder fails",
            kind="hostile",
            error=r"zstd",
        ),
        Case(
            "truncated zstd",
            [zstd(BASE)[:-20]],
            "error",
            "unexpected EOF in the compressed stream",
            kind="hostile",
            error=r"zstd",
        ),
        Case(
            "xz-compressed layer",
            [b"\xfd7zXZ\x00" + bytes(2000)],
            "error",
            "containerd does not decode xz (it reads it as a bad tar header); refused by name",
            kind="hostile",
            error=r"xz|invalid tar header",
        ),
        Case(
            "bzip2-compressed layer",
            [b"BZh91AY&SY" + bytes(2000)],
            "error",
            "containerd does not decode bzip2; refused by name",
            kind="hostile",
            error=r"bzip2|invalid tar header",
        ),
        Case(
            "many PAX headers and no entry",
            [gzip(layer(_pax_bomb(10_000)))],
            "ok",
            "CVE-2019-20907 class: ten thousand extended headers parse in bounded time and "
            "memory and create nothing",
            kind="hostile",
        ),
        Case(
            "64 MiB of zeros after the end of the archive",
            [gzip(layer(reg("f", b"f"), trailing=bytes(64 << 20)))],
            "ok",
            "a small gzip that inflates to a large stream is read through, never held",
            kind="hostile",
        ),
        Case(
            "NUL inside a ustar name",
            [layer(reg(b"a\x00junk", b"a"))],
            "ok",
            "the name field ends at its first NUL: the entry is 'a'",
            kind="hostile",
        ),
        Case(
            "NUL inside a PAX path",
            [layer(reg("f", b"f", pax=[("path", "a\x00b")]))],
            "error",
            "Go's validPAXRecord refuses NUL in path",
            kind="hostile",
            error=r"invalid pax record|invalid tar header",
        ),
        Case(
            "NUL inside a PAX linkpath",
            [layer(symlink("s", "x", pax=[("linkpath", "/a\x00/b")]))],
            "error",
            "Go's validPAXRecord refuses NUL in linkpath",
            kind="hostile",
            error=r"invalid pax record|invalid tar header",
        ),
        Case(
            "malformed PAX record length",
            [layer(pax_header(pax_record("path", "x", length=99)), reg("f", b"f"))],
            "error",
            "Go's parsePAXRecord checks the length against the data",
            kind="hostile",
            error=r"invalid pax record|invalid tar header",
        ),
        Case(
            "PAX data shaped to make a regular expression backtrack",
            [layer(pax_header(b"9" * 700_000 + b" " + b"a" * 300_000), reg("f", b"f"))],
            "error",
            "Python tarfile CVE-2024-6232 class: refused at once (bad length), in linear time",
            kind="hostile",
            error=r"invalid pax record|invalid tar header",
        ),
        Case(
            "PAX numbers of thousands of digits",
            [layer(reg("f", b"f", pax={"uid": "1" * 5000, "mtime": "9" * 5000 + ".5"}))],
            "error",
            "Go's strconv.ParseInt reports them out of range: ErrHeader",
            kind="hostile",
            error=r"invalid pax|invalid tar header",
        ),
        Case(
            "invalid PAX mtime",
            [layer(reg("f", b"f", pax={"mtime": "12a.5"}))],
            "error",
            "Go's parsePAXTime refuses it",
            kind="hostile",
            error=r"invalid pax|invalid tar header",
        ),
        Case(
            "invalid UTF-8 in names",
            [
                layer(
                    dir_(b"\xff\xfe-dir"),
                    reg(b"\xff\xfe-dir/\xc3(", b"x"),
                    symlink(b"l\x80", b"\xfe"),
                )
            ],
            "ok",
            "names are bytes, created as they are",
            kind="hostile",
        ),
        Case(
            "a path longer than PATH_MAX",
            [layer(reg(_deep_name(5000), b"deep"))],
            "error",
            "ENAMETOOLONG once the path is joined to the root",
            kind="hostile",
            error=r"too long",
        ),
        Case(
            "a name component longer than NAME_MAX",
            [layer(reg("x" * 300, b"x"))],
            "error",
            "ENAMETOOLONG from the file system",
            kind="hostile",
            error=r"too long",
        ),
        Case(
            "hardlink to the root",
            [layer(hardlink("h", "/"))],
            "error",
            "hardlinkRootPath resolves it to the root; link(2) refuses directories (EPERM)",
            kind="hostile",
            error=r"(not permitted|directory)",
        ),
        Case(
            "hardlink to a directory",
            [layer(dir_("d"), hardlink("h", "d"))],
            "error",
            "link(2) refuses directories (EPERM)",
            kind="hostile",
            error=r"(not permitted|directory)",
        ),
        Case(
            "hardlink to itself",
            [layer(reg("h", b"h"), hardlink("h", "h"))],
            "error",
            "the existing h is removed first, so the link has no target",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "unknown type flag",
            [layer(entry("weird", b"Z", b"zz"), reg("after", b"a"))],
            "error",
            "createTarFile: 'unhandled tar header type'",
            kind="hostile",
            error=r"unhandled tar header type|unsupported",
        ),
        Case(
            "old GNU sparse entry",
            [layer(entry("sparse", b"S", b"", magic="gnu"))],
            "error",
            "Go returns type 'S' and createTarFile does not handle it",
            kind="hostile",
            error=r"sparse|unhandled tar header type",
        ),
        Case(
            "device nodes through a symlink pointing outside",
            [
                layer(
                    symlink("devdir", outside),
                    blockdev("devdir/evil", 7, 0),
                    chardev("devdir/mem2", 1, 1),
                    fifo("devdir/pipe"),
                )
            ],
            "ok",
            "devdir/ resolves inside the root: the nodes are made there (aimed at the sentinel "
            "rather than the host's /dev, so that a broken applier is caught, not obeyed)",
            kind="hostile",
            root_only=True,
        ),
        Case(
            "invalid whiteout under a name with a newline and invalid UTF-8",
            [layer(reg(b"a\n\xff/.wh."))],
            "error",
            "the error message must stay one printable line",
            kind="hostile",
            error=r"invalid whiteout name",
        ),
        Case(
            "hardlink to a missing file whose name has a newline and invalid UTF-8",
            [layer(dir_("dir"), hardlink("h", b"dir/\xff\nmissing"))],
            "error",
            "the error message must stay one printable line",
            kind="hostile",
            error=r"no such file",
        ),
    ]


def _hostile_chains_and_depth(outside: str) -> list[Case]:
    """Hardlink chains, links swapped mid-layer, depth past PATH_MAX, xattrs, devices."""
    sentinel_file = f"{outside}/{SENTINEL_FILE}"
    sentinel_dir = f"{outside}/{SENTINEL_DIR}"
    relative = "../outside"
    return [
        Case(
            "hardlink chain of sixteen links",
            [layer(reg("f", b"shared"), *_hardlink_chain("h", 16, "f"))],
            "ok",
            "each link names the one before; all seventeen names share one inode",
            kind="hostile",
        ),
        Case(
            "hardlink chain starting at symlinks to the sentinel, with metadata",
            [
                layer(
                    symlink("s", sentinel_file),
                    symlink("d", sentinel_dir),
                    *_hardlink_chain("hs", 4, "s"),
                    *_hardlink_chain("hd", 4, "d"),
                    hardlink("hs4", "hs3", mode=0o777, mtime=0, uid=4321, gid=4321),
                    hardlink("hd4", "hd3", mode=0o700, mtime=0),
                    reg(f"hd4/{SENTINEL_FILE}", b"pwned"),
                    dir_(f"hd2/{SENTINEL_DIR}", mode=0o777, mtime=0),
                )
            ],
            "ok",
            "Python tarfile CVE-2025-4138 / CVE-2024-12718 class: every link of the chain "
            "is the symlink itself (link(2) does not follow); metadata goes to the link, "
            "never through it, and names under it resolve inside the root",
            kind="hostile",
        ),
        Case(
            "hardlink chain through symlinked directories",
            [
                layer(
                    dir_("data"),
                    reg("data/f", b"f"),
                    symlink("l1", "data"),
                    symlink("l2", "/l1"),
                    hardlink("h1", "l2/f"),
                    hardlink("h2", "l1/f"),
                    dir_("sub"),
                    hardlink("sub/h3", "h2"),
                    hardlink("h4", "l2/../sub/h3"),
                )
            ],
            "ok",
            "each target's parent is resolved inside the root; the chain ends at data/f",
            kind="hostile",
        ),
        Case(
            "hardlink to a file later replaced by a symlink to the sentinel",
            [
                layer(
                    reg("f", b"original"),
                    hardlink("g", "f"),
                    symlink("f", sentinel_file),
                    hardlink("h", "f"),
                    reg("g", b"rewritten"),
                ),
                layer(
                    reg("h", b"pwned", mode=0o777),
                    hardlink("k", "f", mode=0o777, mtime=0),
                    reg("f", b"pwned"),
                ),
            ],
            "ok",
            "Python tarfile CVE-2025-4330 class: g keeps the old inode; h and k link the "
            "symlink itself; writing h or f replaces the link, never writes through it",
            kind="hostile",
        ),
        Case(
            "hardlink through a parent replaced by a symlink to the sentinel mid-layer",
            [
                layer(
                    dir_("d"),
                    reg(f"d/{SENTINEL_FILE}", b"inside"),
                    symlink("d", outside),
                    hardlink("h", f"d/{SENTINEL_FILE}"),
                )
            ],
            "error",
            "moby CVE-2018-15664 class as a layer: d/ now resolves to <root><outside>, "
            "where no such file exists; the host's sentinel is never linked",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "an ancestor swapped for a symlink to the sentinel between entries",
            [
                layer(
                    dir_("a"),
                    reg("a/b/x", b"x"),
                    symlink("a", outside),
                    reg(f"a/{SENTINEL_FILE}", b"pwned"),
                    reg(f"a/{SENTINEL_DIR}/new", b"pwned"),
                    symlink("a", relative),
                    reg(f"a/{SENTINEL_FILE}", b"pwned"),
                )
            ],
            "ok",
            "moby CVE-2018-15664 / containerd CVE-2025-47290 class: replacing a drops what "
            "is cached about a and a/b; later names (and a's deferred times) resolve "
            "through the new link, inside",
            kind="hostile",
        ),
        Case(
            "a symlink replaced by a directory and back, twice, mid-layer",
            [
                layer(
                    symlink("s", outside),
                    dir_("s", mtime=0),
                    reg("s/a", b"a"),
                    symlink("s", sentinel_dir),
                    reg(f"s/{SENTINEL_FILE}", b"pwned"),
                    dir_("s", mode=0o777, mtime=0),
                    reg("s/b", b"b"),
                    symlink("s", outside),
                    reg(f"s/{SENTINEL_FILE}", b"pwned"),
                )
            ],
            "ok",
            "each entry replaces what is there; the deferred times of s land on "
            "<root><outside>, which the last write created inside the root",
            kind="hostile",
        ),
        Case(
            "deferred directory times through a parent replaced by a symlink",
            [
                layer(
                    dir_("d"),
                    dir_(f"d/{SENTINEL_DIR}", mode=0o700, mtime=0),
                    symlink("d", outside),
                )
            ],
            "error",
            "applyNaive's final chtimes resolves d/dir through the link, inside the root, "
            "where nothing exists; the sentinel directory's times are untouched",
            kind="hostile",
            error=r"no such file",
        ),
        Case(
            "whiteouts and an opaque marker through a link climbing to the root",
            [
                layer(dir_("a"), symlink("a/up", "../.."), reg("keep", b"k")),
                layer(
                    whiteout("a/up/outside"),
                    whiteout(f"a/up/../outside/{SENTINEL_FILE}"),
                    whiteout(f"a/up/{outside}"),
                    opaque("a/up"),
                ),
            ],
            "ok",
            "a/up resolves to the root: the whiteouts remove nothing outside, and the "
            "opaque marker empties the root's lower entries (a, keep), nothing beyond it",
            kind="hostile",
        ),
        Case(
            "a directory holding links to the sentinel, whited out and replaced",
            [
                layer(
                    dir_("d"),
                    symlink("d/dir", sentinel_dir),
                    symlink("d/file", sentinel_file),
                    dir_("d/sub"),
                    symlink("d/sub/up", "../../../outside"),
                    dir_("e"),
                    symlink("e/dir", relative),
                ),
                layer(whiteout("d"), reg("e", b"now a file")),
            ],
            "ok",
            "removing a tree unlinks the links in it, never what they point to",
            kind="hostile",
        ),
        Case(
            "whiteouts of .. in subdirectories",
            [layer(dir_("a"), dir_("a/b"), reg("a/b/c", b"c"), reg("a/b/.wh..."))],
            "error",
            "validateWhiteout: .wh... would remove a/b's parent",
            kind="hostile",
            error=r"invalid whiteout name",
        ),
        Case(
            "whiteout of .. reached through a symlink",
            [layer(symlink("l", outside), reg("l/.wh..."))],
            "error",
            "validateWhiteout refuses the name before anything is resolved",
            kind="hostile",
            error=r"invalid whiteout name",
        ),
        Case(
            "directories nested past PATH_MAX, one level per entry",
            [gzip(layer(_nested_dirs(70, 62)))],
            "error",
            "70 levels of 62-byte names: ENAMETOOLONG once a name passes 4096 bytes "
            "(gzip-compressed: about 150 KiB of tar)",
            kind="hostile",
            error=r"too long",
        ),
        Case(
            "a 12 KiB PAX path that cleans to a short name",
            [layer(reg("x/../" * 2500 + "f", b"f"), hardlink("h", "y/../" * 2500 + "f"))],
            "ok",
            "names are cleaned before they are resolved: the file is f, h links it",
            kind="hostile",
        ),
        Case(
            "a symlink target of 12 KiB",
            [layer(symlink("s", "t/" * 6000))],
            "error",
            "symlink(2) refuses a target over PATH_MAX: ENAMETOOLONG",
            kind="hostile",
            error=r"too long",
        ),
        Case(
            "short links whose real path passes PATH_MAX",
            [gzip(layer(_realpath_overflow(24, relative)))],
            "error",
            "Python tarfile CVE-2025-4517 class: resolution never turns lexical. The "
            "directory of level 21 resolves to over 4096 bytes: ENAMETOOLONG",
            kind="hostile",
            error=r"too long",
        ),
        Case(
            "an xattr one byte over 64 KiB",
            [gzip(layer(reg("f", b"f", pax={"SCHILY.xattr.user.big": "x" * ((64 << 10) + 1)})))],
            "error",
            "the kernel refuses values over 64 KiB (E2BIG); layerdiff's max_xattr_bytes "
            "refuses it first",
            kind="hostile",
            error=r"xattr|argument list too long",
        ),
        Case(
            "an xattr over 64 KiB on a symlink to the sentinel",
            [gzip(layer(symlink("s", sentinel_file, pax={"SCHILY.xattr.user.big": "x" * 70_000})))],
            "error",
            "as above: E2BIG comes before the EPERM that containerd would only log",
            kind="hostile",
            error=r"xattr|argument list too long",
        ),
        Case(
            "an xattr over 64 KiB whose name has a newline",
            [gzip(layer(reg("f", b"f", pax={"SCHILY.xattr.user.a\nb": "x" * 70_000})))],
            "error",
            "the message names the xattr quoted, on one printable line",
            kind="hostile",
            error=r"xattr 'user\.a\\nb' of|argument list too long",
        ),
        Case(
            "an xattr name over 255 bytes",
            [layer(reg("f", b"f", pax={"SCHILY.xattr.user." + "n" * 300: "v"}))],
            "error",
            "the kernel refuses the name (ERANGE); containerd reports it",
            kind="hostile",
            error=r"xattr",
        ),
        Case(
            "fifty xattrs on one file",
            [layer(reg("f", b"f", pax={f"SCHILY.xattr.user.k{i:02}": f"v{i}" for i in range(50)}))],
            "ok",
            "many small xattrs fit one inode's xattr space on ext4 and tmpfs",
            kind="hostile",
        ),
        Case(
            "device nodes aimed at the sentinel by every route",
            [
                layer(
                    chardev(sentinel_file, 1, 3, mode=0o6777),
                    blockdev(f"{relative}/{SENTINEL_FILE}", 8, 0),
                    fifo(f"{sentinel_dir}/fifo"),
                    symlink("l", relative),
                    chardev(f"l/{SENTINEL_FILE}", 1, 1),
                    blockdev(f"l/{SENTINEL_DIR}", 7, 0, mode=0o666),
                    symlink("m", sentinel_dir),
                    chardev("m/mem", 1, 1),
                    hardlink("hl", "l/file"),
                    symlink("dev-link", sentinel_file),
                    chardev("dev-link", 1, 5),
                ),
                layer(chardev("m", 1, 3, mode=0o777, mtime=0), fifo(f"l/{SENTINEL_FILE}")),
            ],
            "ok",
            "every node is made inside the root: absolute and relative names, parents "
            "through links, a node replacing a link to the sentinel",
            kind="hostile",
            root_only=True,
        ),
        Case(
            "GNU long name with a NUL inside",
            [layer(gnu_longname("inside\x00/../../outside/" + SENTINEL_FILE), reg("x", b"g"))],
            "ok",
            "the name ends at its first NUL (Go's parseString): the entry is 'inside'",
            kind="hostile",
        ),
        Case(
            "invalid UTF-8 in PAX path and linkpath",
            [
                layer(
                    reg("f", b"f", pax=[("path", b"\xff\xfe-pax")]),
                    symlink("s", "x", pax=[("path", b"l\xc3("), ("linkpath", b"\x80/t")]),
                )
            ],
            "ok",
            "PAX strings are bytes to Go; created as they are",
            kind="hostile",
        ),
    ]


def _corrupt(blob: bytes) -> bytes:
    """``blob`` with bytes in its middle flipped (header and trailer kept)."""
    middle = len(blob) // 2
    damaged = bytearray(blob)
    for i in range(middle, middle + 16):
        damaged[i] ^= 0x5A
    return bytes(damaged)


# -- access -------------------------------------------------------------------------------

def build_cases(outside: str = PLACEHOLDER_OUTSIDE) -> list[Case]:
    """Every case, hostile ones aimed at the sentinel directory ``outside``."""
    cases = _ordinary() + _edge() + _hostile(outside) + _hostile_chains_and_depth(outside)
    names = [case.name for case in cases]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"duplicate case names: {sorted(duplicates)}")
    return cases


CASES: list[Case] = build_cases()
_BY_NAME = {case.name: case for case in CASES}


def get(name: str) -> Case:
    """The case called ``name`` (built for the placeholder ``outside``)."""
    return _BY_NAME[name]
