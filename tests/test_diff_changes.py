"""Change detection (the double walk) and how changes become layer entries."""

from __future__ import annotations

import io
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from layerdiff import DiffOptions, apply_layer, diff_trees
from layerdiff.archive.changes import ChangeKind, Tree, double_walk
from layerdiff.archive.tarstream import ChunkReader, TarHeader, TarReader
from layerdiff.compression import Compression
from layerdiff.errors import InvalidArgumentError, NotFoundError, TreeReadError
from tests.support.tree import diff_trees as tree_differences
from tests.support.tree import snapshot_tree

IS_ROOT = os.geteuid() == 0
T0 = 1_600_000_000_123_456_789  # a time with nanoseconds
T1 = 1_700_000_000_000_000_000  # a whole-second time


def write(path: Path, data: bytes = b"x", mtime_ns: int = T0, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def cp_a(src: Path, dst: Path) -> None:
    """A copy keeping owners, modes, nanosecond times, xattrs and hardlinks."""
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)


def settle(root: Path, mtime_ns: int = T0) -> None:
    """Give every directory the same time, so that only entries tell changes apart."""
    for top, dirs, _ in os.walk(root):
        for name in dirs:
            os.utime(Path(top, name), ns=(mtime_ns, mtime_ns))


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    return lower, upper


def changes(lower: Path, upper: Path) -> list[tuple[str, str]]:
    settle(lower)
    settle(upper)
    return [(c.kind.value, c.path) for c in double_walk(Tree(lower), Tree(upper))]


def layer_entries(lower: Path | None, upper: Path, **options: object) -> list[TarHeader]:
    out = io.BytesIO()
    diff_trees(lower, upper, out, DiffOptions(compression=Compression.NONE, **options))  # type: ignore[arg-type]
    reader = TarReader(ChunkReader(iter([out.getvalue()])))
    entries = []
    while (header := reader.next()) is not None:
        entries.append(header)
    return entries


def test_paths_come_in_continuitys_order_slash_below_every_other_byte(
    trees: tuple[Path, Path],
) -> None:
    lower, upper = trees
    for name in ("a/b", "a.b", "a-b", "a0", "B", "é", "a/c/d"):
        write(upper / name)
    assert [p for _, p in changes(lower, upper)] == [
        "B", "a", "a/b", "a/c", "a/c/d", "a-b", "a.b", "a0", "é",
    ]


def test_a_deleted_directory_is_one_delete(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(lower / "gone/deep/er/file")
    write(lower / "kept")
    write(upper / "kept")
    assert changes(lower, upper) == [("delete", "gone")]


def test_a_directory_replaced_by_a_file_hides_its_children(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(lower / "d/child")
    write(upper / "d")
    assert changes(lower, upper) == [("modify", "d")]


def test_a_file_replaced_by_a_directory_adds_its_children(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(lower / "d")
    write(upper / "d/child")
    assert changes(lower, upper) == [("modify", "d"), ("add", "d/child")]


@pytest.mark.parametrize(
    ("change", "detected"),
    [
        (lambda p: p.chmod(0o600), True),
        (lambda p: os.utime(p, ns=(T0, T0 + 1)), True),
        (lambda p: write(p, b"yy"), True),  # the size
        (lambda p: os.setxattr(p, "user.new", b"1"), True),
        (lambda p: os.setxattr(p, "trusted.not.carried", b"1"), False),
        (lambda p: os.utime(p, ns=(T0 + 5, T0)), False),  # access time
        (lambda p: write(p, b"y"), False),  # see below
    ],
    ids=["mode", "mtime-ns", "size", "xattr", "trusted-xattr", "atime", "same-size-same-time"],
)
def test_what_makes_a_file_modified(
    trees: tuple[Path, Path], change: Callable[[Path], object], detected: bool
) -> None:
    lower, upper = trees
    write(lower / "f", b"x")
    change(write(upper / "f", b"x"))
    # The last case is continuity's rule: a nanosecond time that did not change vouches
    # for the content, which is not read.
    assert changes(lower, upper) == ([("modify", "f")] if detected else [])


def test_contents_are_compared_when_times_are_whole_seconds(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(lower / "same", b"abc", T1)
    write(upper / "same", b"abc", T1)
    write(lower / "changed", b"abc", T1)
    write(upper / "changed", b"abd", T1)
    assert changes(lower, upper) == [("modify", "changed")]


def test_symlink_targets_are_always_compared(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    (lower / "l").symlink_to("aaa")
    (upper / "l").symlink_to("bbb")  # same size; same time below
    for tree in trees:
        os.utime(tree / "l", ns=(T0, T0), follow_symlinks=False)
    assert changes(lower, upper) == [("modify", "l")]


def test_directory_metadata_counts_unlike_containerd(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    for name in ("touched", "xattr", "mode", "same"):
        (lower / name).mkdir()
        (upper / name).mkdir()
    os.setxattr(upper / "xattr", "user.a", b"1")
    (upper / "mode").chmod(0o700)
    settle(lower)
    settle(upper)
    os.utime(upper / "touched", ns=(T0, T0 + 1))
    found = [(c.kind.value, c.path) for c in double_walk(Tree(lower), Tree(upper))]
    assert found == [("modify", "mode"), ("modify", "touched"), ("modify", "xattr")]


def test_a_directory_that_lost_an_xattr_is_made_anew(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(lower / "d/kept")
    write(upper / "d/kept")
    os.setxattr(lower / "d", "user.gone", b"1")
    assert changes(lower, upper) == [
        ("delete", "d"), ("add", "d"), ("opaque", "d"), ("add", "d/kept"),
    ]
    layer = [h.name for h in layer_entries(lower, upper)]
    assert layer == [".wh.d", "d/", "d/.wh..wh..opq", "d/kept"]


def test_unchanged_hardlinked_files_are_reported_for_the_writer(
    trees: tuple[Path, Path],
) -> None:
    lower, upper = trees
    os.link(write(lower / "a"), lower / "b")
    os.link(write(upper / "a"), upper / "b")
    assert changes(lower, upper) == [("unmodified", "a"), ("unmodified", "b")]


def test_sockets_are_left_out(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(lower / "was-a-file")
    for name in ("was-a-file", "new"):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(upper / name))
    assert changes(lower, upper) == [("delete", "was-a-file")]


def test_an_empty_lower_means_every_entry_is_added(tmp_path: Path) -> None:
    write(tmp_path / "d/f")
    kinds = {c.kind for c in double_walk(None, Tree(tmp_path))}
    assert kinds == {ChangeKind.ADD}


# ------------------------------------------------------------------------ the entries


def test_entries_carry_what_containerd_writes_and_nanoseconds(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(upper / "dir/file", b"data", T0, 0o4755)
    os.setxattr(upper / "dir/file", "user.k", b"\x00v")
    (upper / "link").symlink_to("dir/file")
    os.mkfifo(upper / "fifo", 0o600)
    settle(upper)
    entries = {h.name: h for h in layer_entries(lower, upper)}
    assert list(entries) == ["dir/", "dir/file", "fifo", "link"]
    f = entries["dir/file"]
    assert (f.typeflag, f.mode, f.size, f.mtime_ns, f.atime_ns) == ("0", 0o4755, 4, T0, None)
    assert dict(f.xattrs()) == {"user.k": b"\x00v"}
    assert (f.uid, f.gid) == (os.geteuid(), os.getegid())
    assert f.pax.get("uname") is None and f.pax.get("gname") is None
    assert entries["link"].typeflag == "2" and entries["link"].linkname == "dir/file"
    assert entries["fifo"].typeflag == "6" and entries["fifo"].mode == 0o600


def test_whiteouts_are_empty_files_of_mode_0_at_the_epoch(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(lower / "d/gone")
    (upper / "d").mkdir()
    whiteout = layer_entries(lower, upper)[1]
    assert (whiteout.name, whiteout.typeflag, whiteout.mode, whiteout.size) == (
        "d/.wh.gone", "0", 0, 0,
    )
    assert (whiteout.uid, whiteout.gid, whiteout.mtime_ns) == (0, 0, 0)


def test_parents_of_a_change_come_first_with_their_metadata(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(lower / "a/b/c/old")
    write(upper / "a/b/c/old")
    write(upper / "a/b/c/new")
    settle(lower)
    settle(upper)
    (upper / "a/b").chmod(0o750)
    os.utime(upper / "a/b/c", ns=(T0, T0))  # the same time as the lower one
    names = [h.name for h in layer_entries(lower, upper)]
    assert names == ["a/", "a/b/", "a/b/c/", "a/b/c/new"]


def test_source_date_epoch_clamps_later_times_only(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(upper / "old", mtime_ns=1_000_000_000_500)
    write(upper / "new", mtime_ns=T0)
    write(lower / "gone")
    entries = layer_entries(lower, upper, source_date_epoch=1_500_000_000)
    times = {h.name: h.mtime_ns for h in entries}
    assert times == {".wh.gone": 0, "new": 1_500_000_000 * 10**9, "old": 1_000_000_000_500}


def _apply_and_compare(lower: Path, upper: Path, tmp_path: Path) -> list[str]:
    target = tmp_path / "target"
    cp_a(lower, target)
    out = io.BytesIO()
    diff_trees(lower, upper, out)
    apply_layer(io.BytesIO(out.getvalue()), target)
    return tree_differences(snapshot_tree(upper), snapshot_tree(target), ignore_atime=True)


def test_a_new_hardlink_to_an_unchanged_file_relinks_it(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    lower, upper = trees
    write(lower / "a/file")
    write(upper / "a/file")
    os.link(upper / "a/file", upper / "0-new-link")  # sorts before a/file
    entries = [(h.name, h.typeflag, h.linkname) for h in layer_entries(lower, upper)]
    # containerd's order: the new path carries the data, the old one is linked after it.
    assert entries == [("0-new-link", "0", ""), ("a/", "5", ""), ("a/file", "1", "0-new-link")]
    assert _apply_and_compare(lower, upper, tmp_path) == []


@pytest.mark.parametrize("how", ["copy over a link", "link over an equal file"])
def test_link_groups_changed_without_any_stat_change_are_rewritten(
    trees: tuple[Path, Path], tmp_path: Path, how: str
) -> None:
    lower, upper = trees
    write(lower / "a")
    write(upper / "a")
    if how == "copy over a link":
        os.link(lower / "a", lower / "b")
        cp_a(upper / "a", upper / "b")
    else:
        cp_a(lower / "a", lower / "b")
        os.link(upper / "a", upper / "b")
    settle(lower)
    settle(upper)
    # containerd writes nothing here: both paths look unchanged, and its applied tree
    # keeps the old link shape. Written again: "a" (which breaks the link, leaving "b"
    # the old inode alone), or "a" and "b" linked to it.
    entries = [(h.name, h.typeflag) for h in layer_entries(lower, upper)]
    expected = [("a", "0")] if how == "copy over a link" else [("a", "0"), ("b", "1")]
    assert entries == expected
    assert _apply_and_compare(lower, upper, tmp_path) == []


def test_a_deleted_hardlink_leaves_its_partner_alone(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    os.link(write(lower / "a"), lower / "b")
    write(upper / "a")
    settle(lower)
    settle(upper)
    assert [h.name for h in layer_entries(lower, upper)] == [".wh.b"]


# ---------------------------------------------------------------------------- errors


def test_missing_and_wrong_inputs_are_named(tmp_path: Path) -> None:
    write(tmp_path / "file")
    with pytest.raises(NotFoundError, match=r"upper directory .* does not exist"):
        diff_trees(tmp_path, tmp_path / "nope", io.BytesIO())
    with pytest.raises(InvalidArgumentError, match=r"lower .* is not a directory"):
        diff_trees(tmp_path / "file", tmp_path, io.BytesIO())
    with pytest.raises(InvalidArgumentError, match="several lower directories"):
        diff_trees([tmp_path, tmp_path], tmp_path, io.BytesIO())
    with pytest.raises(InvalidArgumentError, match="gzip level"):
        diff_trees(tmp_path, tmp_path, io.BytesIO(), DiffOptions(level=10))


def test_a_file_that_changes_size_while_read_fails_the_diff(
    trees: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    lower, upper = trees
    write(upper / "f", b"12345")
    real_read = Tree.read

    def grown(self: Tree, rel: str):  # type: ignore[no-untyped-def]
        yield from real_read(self, rel)
        yield b"more"

    monkeypatch.setattr(Tree, "read", grown)
    with pytest.raises(TreeReadError, match="'f' changed while it was read"):
        diff_trees(lower, upper, io.BytesIO())


@pytest.mark.skipif(IS_ROOT, reason="root reads everything")
def test_an_unreadable_file_is_named(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    write(upper / "secret", mode=0o000)
    with pytest.raises(TreeReadError, match="secret"):
        diff_trees(lower, upper, io.BytesIO())


def test_names_with_undecodable_bytes_come_in_byte_order(trees: tuple[Path, Path]) -> None:
    lower, upper = trees
    raw = [b"a~", b"a\xc3", b"a\xc3\xa9", b"a\xf0\x9f\x98\x80", b"a\xff"]  # byte order
    for name in reversed(raw):
        write(upper / os.fsdecode(name))
    assert [os.fsencode(p) for _, p in changes(lower, upper)] == raw


@pytest.mark.parametrize(
    ("size", "at"),
    [(1, 0), (4096, 4095), (1 << 20, (1 << 20) - 1), ((1 << 20) + 1, 1 << 20), (3 << 20, 5)],
)
def test_whole_second_files_are_compared_to_their_last_byte(
    trees: tuple[Path, Path], size: int, at: int
) -> None:
    lower, upper = trees
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    changed = bytearray(data)
    changed[at] ^= 1
    write(lower / "same", data, T1)
    write(upper / "same", data, T1)
    write(lower / "changed", data, T1)
    write(upper / "changed", bytes(changed), T1)
    assert changes(lower, upper) == [("modify", "changed")]
