"""The apply fast path (plain files in known directories) keeps every semantic of the
full path: replacement, symlinked parents, modes, owners, digests."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from pathlib import Path

import pytest

from layerdiff import ApplyOptions, apply_layer
from layerdiff.errors import CorruptLayerError
from tests.support import tarbuild as tb


def _apply(tmp_path: Path, *entries: bytes) -> tuple[Path, str]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    blob = tb.layer(*entries)
    desc = apply_layer(io.BytesIO(blob), root, ApplyOptions())
    assert desc.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert desc.size == len(blob)
    return root, desc.digest


def test_a_later_file_replaces_an_earlier_one_in_a_known_directory(tmp_path: Path) -> None:
    root, _ = _apply(
        tmp_path,
        tb.dir_("d"),
        tb.reg("d/f", b"first", mode=0o600),
        tb.reg("d/f", b"second", mode=0o640),
    )
    assert (root / "d/f").read_bytes() == b"second"
    assert stat.S_IMODE((root / "d/f").stat().st_mode) == 0o640


def test_a_known_directory_replaced_by_a_symlink_is_resolved_again(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root, _ = _apply(
        tmp_path,
        tb.dir_("d"),
        tb.reg("d/before", b"1"),
        tb.symlink("d", str(outside)),  # absolute: resolved inside the root
        tb.reg("d/after", b"2"),
    )
    assert not list(outside.iterdir())
    target = root / str(outside).lstrip("/") / "after"
    assert target.read_bytes() == b"2"
    assert os.readlink(root / "d") == str(outside)


def test_unclean_names_and_files_at_the_root(tmp_path: Path) -> None:
    root, _ = _apply(
        tmp_path,
        tb.reg("top", b"t"),
        tb.dir_("a"),
        tb.reg("./a/x", b"x"),
        tb.reg("a//y", b"y"),
        tb.reg("/a/z", b"z"),
        tb.reg("a/.hidden", b"h"),
    )
    assert sorted(p.name for p in (root / "a").iterdir()) == [".hidden", "x", "y", "z"]
    assert (root / "top").read_bytes() == b"t"


def test_special_modes_owner_and_times_of_fast_path_files(tmp_path: Path) -> None:
    mtime = 1_234_567_890
    root, _ = _apply(
        tmp_path,
        tb.dir_("d"),
        tb.reg("d/suid", b"#!", mode=0o4755, uid=0, gid=0, mtime=mtime),
        tb.reg("d/plain", b"p", mode=0o644, mtime=mtime),
    )
    st = (root / "d/suid").stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert st.st_mtime_ns == mtime * 1_000_000_000
    assert st.st_atime_ns == mtime * 1_000_000_000
    assert stat.S_IMODE((root / "d/plain").stat().st_mode) == 0o644


@pytest.mark.root
def test_owners_are_set_on_fast_path_files(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give files away")
    root, _ = _apply(tmp_path, tb.dir_("d"), tb.reg("d/f", b"f", uid=1234, gid=5678))
    st = (root / "d/f").stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_a_file_larger_than_a_chunk_is_written_whole(tmp_path: Path) -> None:
    body = os.urandom(3 << 20)  # spans several decoded chunks: written piece by piece
    root, _ = _apply(tmp_path, tb.dir_("d"), tb.reg("d/big", body), tb.reg("d/small", b"s"))
    assert (root / "d/big").read_bytes() == body
    assert (root / "d/small").read_bytes() == b"s"


def test_a_failed_apply_leaves_no_thread_behind(tmp_path: Path) -> None:
    before = threading.active_count()
    root = tmp_path / "root"
    root.mkdir()
    corrupt = tb.layer(tb.reg("f", b"data"), tb.reg("g", b"x", checksum=1))
    with pytest.raises(CorruptLayerError, match="checksum"):
        apply_layer(io.BytesIO(corrupt), root, ApplyOptions())
    assert threading.active_count() == before
