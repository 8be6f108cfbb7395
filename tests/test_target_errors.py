"""A target that refuses writes gives one clear error naming the problem and the entry."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerdiff import apply_layer
from layerdiff.errors import TargetError
from tests.support.layers import layer

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a file system needs root")


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: large layers run out of space on it."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only bind mount of an empty directory."""
    source, mountpoint = tmp_path / "source", tmp_path / "ro"
    source.mkdir()
    mountpoint.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(mountpoint)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


@needs_root
@pytest.mark.root
def test_no_space_left_names_the_entry(small_tmpfs: Path) -> None:
    big = layer(("file", "small", {"data": b"ok"}), ("file", "big", {"data": os.urandom(2 << 20)}))
    with pytest.raises(TargetError) as caught:
        apply_layer(io.BytesIO(big), small_tmpfs)
    message = str(caught.value)
    assert "'big'" in message and "No space left on device" in message
    assert "\n" not in message


@needs_root
@pytest.mark.root
def test_read_only_target_names_the_entry(read_only: Path) -> None:
    with pytest.raises(TargetError) as caught:
        apply_layer(io.BytesIO(layer(("file", "f", {"data": b"x"}))), read_only)
    assert "'f'" in str(caught.value) and "Read-only file system" in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root is not refused by permissions")
def test_permission_denied_names_the_entry(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    with pytest.raises(TargetError) as caught:
        apply_layer(io.BytesIO(layer(("file", "f", {"data": b"x"}))), locked)
    assert "'f'" in str(caught.value) and "Permission denied" in str(caught.value)


@pytest.fixture
def deep_root(tmp_path: Path) -> Iterator[Path]:
    """A target whose deep trees are removed by rm(1): pytest's own cleanup recurses."""
    root = tmp_path / "deep"
    root.mkdir()
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=True)


def test_thousands_of_missing_parents_are_created(deep_root: Path) -> None:
    name = "/".join(["a"] * 1800) + "/f"  # beyond Python's recursion limit, within PATH_MAX
    apply_layer(io.BytesIO(layer(("file", name, {"data": b"deep"}))), deep_root)
    assert (deep_root / name).read_bytes() == b"deep"


def test_a_tree_deeper_than_the_recursion_limit_is_whited_out(deep_root: Path) -> None:
    # Python 3.11's shutil.rmtree recurses once per level; containerd removes such a tree.
    name = "/".join(["b"] * 1200) + "/f"
    deep_then_gone = layer(("file", name, {"data": b"x"}), ("file", ".wh.b"))
    apply_layer(io.BytesIO(deep_then_gone), deep_root)
    assert os.listdir(deep_root) == []
