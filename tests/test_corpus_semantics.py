"""What the corpus's layers must unpack to: the exact trees, as containerd 1.7 makes them.

Each test applies a case of ``tests/support/corpus.py`` (by name) onto an empty
directory in naive mode and states the resulting tree. Where containerd's behaviour is
surprising, the comment names the containerd function that causes it. ``strict_oci``
tests state where the image-spec's rules differ. The overlay-form tests state what an
upperdir holds (whiteout devices, opaque xattrs) and that, for every case, the mounted
overlay of the upperdirs shows the same tree as the naive result.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import zlib
from pathlib import Path

import pytest
from backports.zstd import ZstdError

from layerdiff import ApplyOptions, Descriptor, LayerdiffError, WhiteoutMode, apply_layer
from tests.support import corpus, ocilayout
from tests.support.containerd import Containerd, ContainerdUnpackError
from tests.support.corpus import BASE, BASE256_MTIME, PLACEHOLDER_OUTSIDE
from tests.support.layers import apply_overlay_stack
from tests.support.tarbuild import BLOCK, DEFAULT_MTIME, dir_, layer, opaque, reg, whiteout
from tests.support.tree import diff_trees, merged_view, snapshot_tree

NS = 1_000_000_000
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (devices, chown, xattrs)")
STRICT = ApplyOptions(strict_oci=True)


def apply_layers(layers: list[bytes], root: Path, options: ApplyOptions | None = None) -> Path:
    """Apply ``layers`` in order onto ``root`` (created if missing); return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for blob in layers:
        apply_layer(io.BytesIO(blob), root, options)
    return root


def unpack(name: str, tmp_path: Path, options: ApplyOptions | None = None) -> Path:
    """The tree of corpus case ``name``, applied naively onto ``tmp_path/"root"``."""
    return apply_layers(corpus.get(name).layers, tmp_path / "root", options)


def listing(directory: Path) -> list[str]:
    """Every path under ``directory``, relative, directories with a trailing '/'.

    A symlink is listed as a name, never followed, whatever it points to.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        rel = os.path.relpath(dirpath, directory)
        for name in dirnames + filenames:
            path = os.path.normpath(os.path.join(rel, name))
            real_dir = stat.S_ISDIR(os.lstat(os.path.join(dirpath, name)).st_mode)
            out.append(path + "/" if real_dir else path)
    return sorted(out)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def same_inode(a: Path, b: Path) -> bool:
    sa, sb = os.lstat(a), os.lstat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


BASE_LISTING = [
    "bin",
    "d/",
    "d/a",
    "d/b",
    "d/sub/",
    "d/sub/x",
    "etc/",
    "etc/passwd",
    "usr/",
    "usr/bin/",
    "usr/bin/sh",
]


# -- ordinary layers -----------------------------------------------------------------------


def test_root_file_system(tmp_path: Path) -> None:
    root = unpack("root file system", tmp_path)
    assert listing(root) == BASE_LISTING
    assert os.readlink(root / "bin") == "usr/bin"
    assert mode_of(root / "usr/bin/sh") == 0o755
    assert os.lstat(root / "d/a").st_mtime_ns == DEFAULT_MTIME * NS


@needs_root
def test_every_entry_type(tmp_path: Path) -> None:
    root = unpack("every entry type", tmp_path)
    null, loop = os.lstat(root / "dev/null"), os.lstat(root / "dev/loop0")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 0)
    assert (stat.S_IMODE(loop.st_mode), loop.st_gid) == (0o660, 6)
    assert stat.S_ISFIFO(os.lstat(root / "run.pipe").st_mode)
    assert mode_of(root / "run.pipe") == 0o600
    assert same_inode(root / "f", root / "f2")
    assert os.readlink(root / "dangling") == "/does/not/exist"


@needs_root
def test_setuid_setgid_and_sticky_bits_survive_chown(tmp_path: Path) -> None:
    root = unpack("setuid, setgid and sticky bits with owners", tmp_path)
    suid = os.lstat(root / "suid")
    assert (stat.S_IMODE(suid.st_mode), suid.st_uid, suid.st_gid) == (0o4755, 1000, 1000)
    assert (mode_of(root / "sgid"), os.lstat(root / "sgid").st_gid) == (0o2711, 50)
    assert mode_of(root / "tmp") == 0o1777
    assert mode_of(root / "shared") == 0o2775
    child = os.lstat(root / "shared/child")
    assert (child.st_uid, child.st_gid) == (7, 8)


def test_xattrs_on_files_and_directories_not_on_symlinks_or_fifos(tmp_path: Path) -> None:
    root = unpack("xattrs on files, directories and symlinks", tmp_path)
    assert os.getxattr(root / "xd", "user.dir") == b"dv"
    assert os.getxattr(root / "xd/f", "user.k") == b"v"
    assert os.getxattr(root / "xd/f", "user.e") == b""
    # createTarFile: EPERM for user.* on a symlink or fifo is logged, not an error.
    assert os.listxattr(root / "xs", follow_symlinks=False) == []
    assert os.listxattr(root / "xp", follow_symlinks=False) == []


def test_nanosecond_times_and_access_times(tmp_path: Path) -> None:
    root = unpack("nanosecond mtimes and PAX access times", tmp_path)
    f, g = os.lstat(root / "t/f"), os.lstat(root / "t/g")
    assert (f.st_mtime_ns, f.st_atime_ns) == (1600000000123456789, 1700000000500000000)
    # Digits past the ninth are cut, not rounded; an atime before the mtime is replaced
    # by the mtime (latestTime in archive/time.go).
    assert (g.st_mtime_ns, g.st_atime_ns) == (1600000000999999999, 1600000000999999999)
    assert os.lstat(root / "t/l").st_mtime_ns == 1400000000250000000
    assert os.lstat(root / "t").st_mtime_ns == 1500000000000000001


def test_long_names_via_pax(tmp_path: Path) -> None:
    root = unpack("long names and link targets via PAX", tmp_path)
    long_file = root / ("n" * 150) / ("m" * 200)
    assert long_file.read_bytes() == b"long"
    assert os.readlink(root / ("s" * 120)) == "t" * 300
    assert same_inode(root / ("h" * 130), long_file)


def test_long_names_via_gnu_records(tmp_path: Path) -> None:
    root = unpack("long names and link targets via GNU L and K records", tmp_path)
    assert (root / ("g" * 150) / ("file" * 40)).read_bytes() == b"gnu"
    assert os.readlink(root / ("k" * 180)) == "target/" * 30
    assert not (root / "truncated-in-header").exists()
    assert not (root / "also-truncated").exists()


def test_ustar_prefix_field(tmp_path: Path) -> None:
    root = unpack("ustar prefix field", tmp_path)
    assert (root / "some/deep/prefix/file").read_bytes() == b"p"


def test_unicode_and_invalid_utf8_names_are_kept_as_bytes(tmp_path: Path) -> None:
    root = unpack("unicode names", tmp_path)
    assert (root / "ünïcödé" / "文件").read_bytes() == b"u"
    assert (root / "emoji-🙂").exists()
    raw = unpack("invalid UTF-8 in names", tmp_path / "raw")
    top = sorted(os.listdir(os.fsencode(raw)))
    assert top == [b"l\x80", b"\xff\xfe-dir"]
    assert os.listdir(os.fsencode(raw / os.fsdecode(b"\xff\xfe-dir"))) == [b"\xc3("]
    assert os.readlink(os.fsencode(raw) + b"/l\x80") == b"\xfe"


@needs_root
def test_base256_numbers(tmp_path: Path) -> None:
    root = unpack("base-256 numbers", tmp_path)
    st = os.lstat(root / "big")
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (10_000_000, 20_000_000, BASE256_MTIME * NS)


def test_v7_headers_and_the_old_regular_file_type(tmp_path: Path) -> None:
    root = unpack("v7 headers and the old regular-file type", tmp_path)
    assert listing(root) == ["olddir/", "olddir/oldfile"]
    assert (root / "olddir/oldfile").read_bytes() == b"v7"
    assert mode_of(root / "olddir/oldfile") == 0o600


def test_signed_checksums_and_gnu_access_times(tmp_path: Path) -> None:
    assert (unpack("old tars' signed checksums", tmp_path) / "é-signed").read_bytes() == b"s"
    gnu = unpack("GNU format headers with access times", tmp_path / "gnu")
    assert os.lstat(gnu / "gnu-file").st_atime_ns == 1_700_000_000 * NS


# -- whiteouts -----------------------------------------------------------------------------


def test_whiteout_after_its_file_in_the_same_layer_deletes_it(tmp_path: Path) -> None:
    # Surprising: applyNaive's convertWhiteout removes whatever the whiteout names,
    # including what this very layer just wrote.
    root = unpack("whiteout after its file in the same layer", tmp_path)
    assert not (root / "new").exists()
    assert not (root / "d/a").exists()
    assert (root / "d/b").read_bytes() == b"b"


def test_whiteout_after_its_file_keeps_the_file_with_strict_oci(tmp_path: Path) -> None:
    # The image-spec: a whiteout hides what lower layers had, never its own layer's files.
    root = unpack("whiteout after its file in the same layer", tmp_path, STRICT)
    assert (root / "new").read_bytes() == b"n"
    assert (root / "d/a").read_bytes() == b"A2"


def test_whiteout_before_its_file(tmp_path: Path) -> None:
    root = unpack("whiteout before its file in the same layer", tmp_path)
    assert (root / "d/a").read_bytes() == b"A2"


def test_whiteouts_of_missing_paths_create_their_parents(tmp_path: Path) -> None:
    # Surprising: applyNaive calls mkparent before convertWhiteout, so the missing
    # parent of a whiteout is created, empty.
    root = unpack("whiteouts of paths that do not exist", tmp_path)
    assert listing(root) == sorted([*BASE_LISTING, "nodir/"])
    assert mode_of(root / "nodir") == 0o755


@pytest.mark.parametrize(
    ("name", "children"),
    [
        ("opaque marker first among its directory's entries", ["n"]),
        ("opaque marker in the middle of its directory's entries", ["m", "n"]),
        # The layer's own d/sub/ entry is kept, but the walk descends into it and
        # removes the lower d/sub/x: it was not unpacked by this layer.
        ("opaque marker last among its directory's entries", ["m", "n", "sub/"]),
        ("opaque marker without a directory entry", ["n"]),
        # Surprising: d/sub was never an entry of the layer (only implied by d/sub/new),
        # so applyNaive's opaque walk removes it, and the layer's own file with it.
        ("opaque marker removes the layer's files under a directory it did not list", []),
    ],
)
def test_opaque_marker_hides_lower_children_wherever_it_stands(
    name: str, children: list[str], tmp_path: Path
) -> None:
    root = unpack(name, tmp_path)
    assert listing(root / "d") == children
    assert listing(root / "etc") == ["passwd"]


def test_opaque_marker_at_the_layer_root(tmp_path: Path) -> None:
    root = unpack("opaque marker at the layer root", tmp_path)
    assert listing(root) == ["early", "late"]


def test_opaque_marker_for_a_new_directory(tmp_path: Path) -> None:
    root = unpack("opaque marker for a directory no lower layer has", tmp_path)
    assert listing(root / "fresh") == ["f"]


def test_directory_deleted_and_recreated_in_one_layer(tmp_path: Path) -> None:
    root = unpack("directory deleted and recreated in one layer", tmp_path)
    assert listing(root / "d") == ["n"]
    assert mode_of(root / "d") == 0o700


def test_directory_deleted_later_in_its_own_layer_fails(tmp_path: Path) -> None:
    # applyNaive sets directory times after the last entry; nd is gone by then.
    with pytest.raises(LayerdiffError, match="nd"):
        unpack("a directory deleted later in its own layer", tmp_path)


# -- replacing -----------------------------------------------------------------------------


@needs_root
def test_directory_over_directory_merges_children_and_takes_metadata(tmp_path: Path) -> None:
    root = unpack("directory over directory merges", tmp_path)
    assert listing(root / "d") == ["a", "b", "c", "sub/", "sub/x"]
    st = os.lstat(root / "d")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 7, 8)
    assert st.st_mtime_ns == 1234 * NS


def test_file_replaces_a_directory(tmp_path: Path) -> None:
    root = unpack("file replaces a directory", tmp_path)
    assert (root / "d").read_bytes() == b"now a file"


def test_directory_replaces_a_file(tmp_path: Path) -> None:
    root = unpack("directory replaces a file", tmp_path)
    assert listing(root / "etc") == ["passwd/", "passwd/x"]


def test_symlink_replaced_by_a_directory_is_not_followed(tmp_path: Path) -> None:
    root = unpack("symlink replaced by a directory", tmp_path)
    assert not (root / "bin").is_symlink()
    assert listing(root / "bin") == ["own"]
    assert listing(root / "usr/bin") == ["sh"]


def test_the_same_path_twice_in_one_layer(tmp_path: Path) -> None:
    root = unpack("the same path twice in one layer", tmp_path)
    assert (root / "f").read_bytes() == b"2"
    assert (root / "g").read_bytes() == b"file"


def test_directory_replaced_by_a_symlink_gives_its_time_to_the_target(tmp_path: Path) -> None:
    # Surprising: applyNaive sets each directory's times at the end through
    # fs.RootPath(root, hdr.Name), which follows d -> e; so e ends with d's mtime.
    root = unpack("a directory replaced by a symlink in the same layer", tmp_path)
    assert os.readlink(root / "d") == "e"
    assert os.lstat(root / "e").st_mtime_ns == 200 * NS


# -- links ---------------------------------------------------------------------------------


def test_usrmerge_writes_land_in_usr_bin(tmp_path: Path) -> None:
    root = unpack("usrmerge: writing through a lower layer's relative symlink", tmp_path)
    assert os.readlink(root / "bin") == "usr/bin"
    assert listing(root / "usr/bin") == ["ls", "sh"]


def test_usrmerge_through_an_absolute_symlink(tmp_path: Path) -> None:
    root = unpack("usrmerge: writing through a lower layer's absolute symlink", tmp_path)
    assert os.readlink(root / "lib") == "/usr/lib"
    assert (root / "usr/lib/libc.so").read_bytes() == b"c"


def test_writing_through_a_symlink_whose_target_passes_through_another(tmp_path: Path) -> None:
    # a -> l/m with l -> real: the file lands in real/m/b/f (continuity's walkLink
    # lstat()s <root>/l/m/b, and the kernel follows l on the way).
    root = unpack(
        "writing through a symlink whose target passes through another symlink", tmp_path
    )
    assert (root / "real/m/b/f").read_bytes() == b"f"


def test_usrmerge_link_through_lib_then_a_subdirectory(tmp_path: Path) -> None:
    root = unpack("usrmerge: a link through /lib, then a subdirectory through it", tmp_path)
    assert (root / "usr/lib/foo/sub/bar").read_bytes() == b"x"
    assert os.readlink(root / "usr/share/foo") == "/lib/foo"


def test_hardlink_to_a_file_of_a_lower_layer(tmp_path: Path) -> None:
    root = unpack("hardlink to a file of a lower layer", tmp_path)
    assert same_inode(root / "etc/passwd", root / "etc/passwd2")


def test_hardlink_to_a_symlink_links_the_symlink(tmp_path: Path) -> None:
    root = unpack("hardlink to a symlink links the symlink itself", tmp_path)
    assert os.readlink(root / "h") == "target"
    assert same_inode(root / "h", root / "s")


def test_hardlink_keeps_the_old_inode_when_its_target_is_replaced(tmp_path: Path) -> None:
    root = unpack("hardlink to a file later replaced keeps the old content", tmp_path)
    assert (root / "g").read_bytes() == b"old"
    assert (root / "f").read_bytes() == b"new"
    assert not same_inode(root / "f", root / "g")


def test_hardlink_through_a_directory_symlink(tmp_path: Path) -> None:
    root = unpack("hardlink through a directory symlink inside the root", tmp_path)
    assert same_inode(root / "h", root / "data/f")


@needs_root
def test_hardlink_header_metadata_overrides_the_targets(tmp_path: Path) -> None:
    # Surprising: createTarFile applies a link entry's owner, mode and times to the
    # inode it shares with its target.
    root = unpack("hardlink header whose mode, owner and mtime differ from its target's", tmp_path)
    assert same_inode(root / "f", root / "g")
    st = os.lstat(root / "f")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 2, 3)
    assert st.st_mtime_ns == 200 * NS


def test_hardlink_climbing_out_links_inside(tmp_path: Path) -> None:
    root = unpack("hardlink climbing to ../../etc/passwd", tmp_path)
    assert same_inode(root / "h", root / "etc/passwd")


# -- parents, names and roots --------------------------------------------------------------


def test_parent_directories_not_in_the_layer_are_made_0755(tmp_path: Path) -> None:
    root = unpack("parent directories not in the layer", tmp_path)
    assert listing(root) == ["a/", "a/b/", "a/b/c/", "a/b/c/f"]
    assert {mode_of(root / p) for p in ("a", "a/b", "a/b/c")} == {0o755}


def test_entries_for_the_root_leave_the_target_alone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.chmod(root, 0o751)
    apply_layers(corpus.get("entries for the root itself are ignored").layers, root)
    assert mode_of(root) == 0o751
    assert listing(root) == ["f"]


def test_names_climbing_out_land_in_the_root(tmp_path: Path) -> None:
    # Go's path.Clean makes "a/../../../../escape2" "../../../escape2": no a/ is made.
    root = unpack("names climbing out with ..", tmp_path)
    assert listing(root) == ["escape", "escape2"]


def test_absolute_names_are_relative_to_the_root(tmp_path: Path) -> None:
    root = unpack("absolute names aimed at the sentinel", tmp_path)
    inside = root / PLACEHOLDER_OUTSIDE.lstrip("/")
    assert (root / "nonexistent/escape-abs").read_bytes() == b"a"
    assert (inside / "file").read_bytes() == b"pwned"
    assert mode_of(inside / "dir") == 0o777


def test_symlinks_named_root_are_skipped(tmp_path: Path) -> None:
    root = unpack("symlinks to /. and a symlink named /.", tmp_path)
    assert not root.is_symlink()
    assert sorted(os.listdir(root)) == ["after", "nonexistent", "self"]
    assert os.readlink(root / "self") == "/."
    assert (root / PLACEHOLDER_OUTSIDE.lstrip("/") / "file").read_bytes() == b"pwned"


def test_nul_ends_a_ustar_name(tmp_path: Path) -> None:
    root = unpack("NUL inside a ustar name", tmp_path)
    assert listing(root) == ["a"]


def test_header_only_entries_ignore_their_size_field(tmp_path: Path) -> None:
    root = unpack("header-only entries ignore their size field", tmp_path)
    assert listing(root) == ["after", "d/", "s"]
    assert (root / "after").read_bytes() == b"a"
    negative = unpack("negative size on a directory is ignored", tmp_path / "neg")
    assert listing(negative) == ["after", "d/"]


# -- PAX, sizes and stream ends --------------------------------------------------------------


def test_pax_size_smaller_than_the_headers_is_what_counts(tmp_path: Path) -> None:
    # As Go reads it: the PAX size (0) wins, so the carrier's "data" is the next header.
    root = unpack("PAX size smaller than the header's", tmp_path)
    assert (root / "carrier").read_bytes() == b""
    assert (root / "smuggled").read_bytes() == b"hid"


def test_pax_size_larger_than_the_headers_is_what_counts(tmp_path: Path) -> None:
    root = unpack("PAX size larger than the header's", tmp_path)
    assert listing(root) == ["carrier"]
    data = (root / "carrier").read_bytes()
    assert len(data) == 2 * BLOCK and data.startswith(b"hidden\x00")


def test_pax_size_on_a_directory_is_ignored(tmp_path: Path) -> None:
    root = unpack("PAX size on a directory is ignored", tmp_path)
    assert listing(root) == ["after", "d/"]


def test_pax_global_header_creates_nothing(tmp_path: Path) -> None:
    root = unpack("PAX global header", tmp_path)
    assert listing(root) == ["f"]


def test_pax_global_header_removes_what_has_its_name(tmp_path: Path) -> None:
    # Surprising: applyNaive removes the existing path (and mkparent creates the
    # parents) before createTarFile ignores a TypeXGlobalHeader entry.
    root = unpack("PAX global header named like an existing path", tmp_path)
    assert not (root / "etc/passwd").exists()
    assert listing(root / "new") == []


def test_pax_headers_without_an_entry_create_nothing(tmp_path: Path) -> None:
    assert listing(unpack("a PAX header and then the end of the archive", tmp_path)) == []
    assert listing(unpack("many PAX headers and no entry", tmp_path / "many")) == []


def test_a_one_mib_pax_header_is_accepted(tmp_path: Path) -> None:
    assert listing(unpack("a PAX header of exactly 1 MiB", tmp_path)) == ["f"]
    blob = corpus.get("a PAX header of exactly 1 MiB").layers[0]
    assert blob[124:136] == b"%011o\x00" % (1 << 20)  # the PAX header's own size field


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("empty layer", []),
        ("only the end-of-archive blocks", []),
        ("one zero block and the end of the stream", []),
        ("no end-of-archive blocks", ["f"]),
        ("the stream ends inside the padding of the last entry", ["f"]),
        ("trailing bytes after the end of the archive", ["f"]),
    ],
)
def test_where_a_layer_ends(name: str, expected: list[str], tmp_path: Path) -> None:
    assert listing(unpack(name, tmp_path)) == expected


def test_the_padding_of_a_truncated_last_entry_is_not_needed(tmp_path: Path) -> None:
    # Go's reader reads padding with tryReadFull, which takes a short read at EOF as
    # the end of the archive: the file's data is whole, so containerd accepts it.
    root = unpack("the stream ends inside the padding of the last entry", tmp_path)
    assert (root / "f").read_bytes() == b"12345"


@pytest.mark.parametrize(
    "name",
    [
        "trailing bytes after the end of the archive",
        "empty layer",
        "only the end-of-archive blocks",
        "64 MiB of zeros after the end of the archive",
    ],
)
def test_digest_covers_the_whole_uncompressed_stream(name: str, tmp_path: Path) -> None:
    [blob] = corpus.get(name).layers
    root = tmp_path / "root"
    root.mkdir()
    desc = apply_layer(io.BytesIO(blob), root)
    stream = _gunzip(blob)
    assert desc == Descriptor(
        "application/vnd.oci.image.layer.v1.tar",
        "sha256:" + hashlib.sha256(stream).hexdigest(),
        len(stream),
    )


@pytest.mark.parametrize(
    "name", ["gzip stream of several members", "zstd stream of several frames"]
)
def test_compressed_streams_of_several_members_are_one_stream(name: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    [blob] = corpus.get(name).layers
    desc = apply_layer(io.BytesIO(blob), root)
    assert desc.digest == "sha256:" + hashlib.sha256(BASE).hexdigest()
    assert desc.size == len(BASE)
    assert listing(root) == BASE_LISTING


def _gunzip(blob: bytes) -> bytes:
    return gzip.decompress(blob) if blob.startswith(b"\x1f\x8b") else blob


# -- times ---------------------------------------------------------------------------------


def test_times_before_1970_and_after_2262_become_the_epoch(tmp_path: Path) -> None:
    # boundTime (archive/time.go): before 1970 or after Go's maxTime, the time is 0.
    root = unpack("times before 1970 and after 2262", tmp_path)
    for path in ("old", "old/f", "frac", "future"):
        assert os.lstat(root / path).st_mtime_ns == 0, path


def test_times_before_1970_are_kept_with_strict_oci(tmp_path: Path) -> None:
    root = unpack("times before 1970 and after 2262", tmp_path, STRICT)
    assert os.lstat(root / "old").st_mtime_ns == -5 * NS
    assert os.lstat(root / "old/f").st_mtime_ns == -100 * NS
    assert os.lstat(root / "frac").st_mtime_ns == -1_500_000_000


def test_negative_base256_mtime_becomes_the_epoch(tmp_path: Path) -> None:
    root = unpack("negative mtime in base-256", tmp_path)
    assert os.lstat(root / "f").st_mtime_ns == 0


@needs_root
def test_ids_beyond_32_bits_keep_their_low_bits(tmp_path: Path) -> None:
    root = unpack("uid and gid beyond 32 bits", tmp_path)
    st = os.lstat(root / "f")
    assert (st.st_uid, st.st_gid) == (5, 6)


# -- xattrs --------------------------------------------------------------------------------


def test_trusted_xattrs_are_ignored_and_user_overlay_ones_kept_in_naive_mode(
    tmp_path: Path,
) -> None:
    # containerd's setxattr (archive/tar_unix.go) refuses trusted.* from an archive
    # (ENOTSUP, only logged); user.overlay.* are plain user xattrs to a naive target.
    root = unpack("trusted.* and user.overlay.* xattrs in a layer", tmp_path)
    names = sorted(os.listxattr(root / "f"))
    assert names == ["user.k", "user.overlay.origin"]
    assert os.getxattr(root / "o", "user.overlay.opaque") == b"y"


def test_a_file_with_socket_mode_bits_is_skipped(tmp_path: Path) -> None:
    # A deliberate difference (docs/semantics.md): containerd creates a regular file
    # (os.OpenFile drops the type bits); layerdiff skips the entry.
    root = unpack("a file with socket mode bits", tmp_path)
    assert listing(root) == ["after"]


# -- overlay form --------------------------------------------------------------------------


def _overlay(
    lower_layers: list[bytes], blob: bytes, tmp_path: Path, *, userxattr: bool = False
) -> Path:
    lower = apply_layers(lower_layers, tmp_path / "lower")
    upper = tmp_path / "upper"
    upper.mkdir()
    apply_layer(
        io.BytesIO(blob),
        upper,
        ApplyOptions(mode=WhiteoutMode.OVERLAY, parents=(str(lower),), userxattr=userxattr),
    )
    return upper


@needs_root
def test_overlay_whiteout_is_a_0_0_character_device_owned_as_the_entry(tmp_path: Path) -> None:
    lower = layer(dir_("d", mode=0o750, uid=3, gid=4), reg("d/a", b"a"))
    upper = _overlay([lower], layer(whiteout("d/a", uid=5, gid=6)), tmp_path)
    st = os.lstat(upper / "d/a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (st.st_uid, st.st_gid) == (5, 6)
    # d/ is not in the layer: mkparent copies the lower directory's mode and owner.
    assert listing(upper) == ["d/", "d/a"]
    d = os.lstat(upper / "d")
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid) == (0o750, 3, 4)


@needs_root
def test_overlay_whiteout_of_a_path_no_lower_layer_has_is_not_written(tmp_path: Path) -> None:
    # containerd writes it anyway; in a directory no lower layer has, overlayfs would
    # then list the whiteout itself as an unreadable entry (docs/semantics.md).
    upper = _overlay([BASE], layer(whiteout("ghost"), whiteout("newdir/ghost")), tmp_path)
    assert not os.path.lexists(upper / "ghost")
    assert listing(upper) == ["newdir/"]


@needs_root
@pytest.mark.parametrize(
    ("userxattr", "marker", "other"),
    [
        (False, "trusted.overlay.opaque", "user.overlay.opaque"),
        (True, "user.overlay.opaque", "trusted.overlay.opaque"),
    ],
)
def test_overlay_opaque_marker_is_an_xattr(
    userxattr: bool, marker: str, other: str, tmp_path: Path
) -> None:
    upper = _overlay([BASE], layer(opaque("d"), reg("d/n", b"n")), tmp_path, userxattr=userxattr)
    assert os.getxattr(upper / "d", marker) == b"y"
    assert other not in os.listxattr(upper / "d")
    assert listing(upper) == ["d/", "d/n"]


@needs_root
def test_overlay_layer_xattrs_are_not_taken_as_overlay_instructions(tmp_path: Path) -> None:
    blob = corpus.get("trusted.* and user.overlay.* xattrs in a layer").layers[0]
    upper = _overlay([], blob, tmp_path, userxattr=True)
    # The layer's own user.overlay.* are stored escaped (user.overlay.overlay.*), which
    # overlayfs (Linux >= 6.7) shows under their original names; trusted.* are ignored.
    assert sorted(os.listxattr(upper / "f")) == [
        "user.k",
        "user.overlay.overlay.origin",
    ]
    assert os.listxattr(upper / "o") == ["user.overlay.overlay.opaque"]


OK_CASES = [case for case in corpus.CASES if case.expect == "ok"]


@needs_root
@pytest.mark.parametrize("name", [case.name for case in OK_CASES])
def test_overlay_form_shows_the_naive_tree(name: str, tmp_path: Path) -> None:
    layers = corpus.get(name).layers
    naive = apply_layers(layers, tmp_path / "naive")
    uppers = apply_overlay_stack(layers, tmp_path)
    expected = snapshot_tree(naive)
    with merged_view(uppers) as merged:
        actual = snapshot_tree(merged)
    assert diff_trees(expected, actual, ignore_atime=True, ignore_dir_mtimes=True) == []


# -- the oracle ----------------------------------------------------------------------------

#: Cases where layerdiff's tree differs from containerd's on purpose (docs/semantics.md).
DOCUMENTED_DIFFERENCES = {
    "a file with socket mode bits": "layerdiff skips socket entries; containerd makes a file",
}

#: Cases where containerd's outcome differs from layerdiff's on purpose: containerd's.
CONTAINERD_OUTCOME = {
    "symlinks that expand exponentially": "ok",  # host-dependent placement; we refuse
}


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.parametrize("name", [case.name for case in corpus.CASES])
def test_containerd_gives_the_corpus_outcome(
    name: str, containerd: Containerd, tmp_path: Path
) -> None:
    """The corpus's expectations are containerd's, and so is layerdiff's tree."""
    case = corpus.get(name)
    try:
        for blob in case.layers:
            ocilayout.decompress(blob)
    except (OSError, EOFError, ValueError, zlib.error, ZstdError):
        pytest.skip("the image harness cannot compute the diffID of a corrupt blob")
    expected = CONTAINERD_OUTCOME.get(name, case.expect)
    try:
        theirs = containerd.unpack(case.layers, "native")
    except ContainerdUnpackError as err:
        assert expected == "error", f"containerd refuses it: {err}"
        return
    assert expected == "ok", "containerd accepts it"
    if name in DOCUMENTED_DIFFERENCES or name in CONTAINERD_OUTCOME:
        return
    ours = apply_layers(case.layers, tmp_path / "ours")
    # Native snapshots are copies of their parents, which keep no directory times.
    problems = diff_trees(
        snapshot_tree(theirs[-1]), snapshot_tree(ours), ignore_atime=True, ignore_dir_mtimes=True
    )
    assert problems == []
