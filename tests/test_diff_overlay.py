"""The overlay fast path: changes read from an upperdir alone, on real overlayfs mounts.

Changes are made through the mounted overlay, as a container makes them; then the layer
read from the upperdir must be the one the double walk gives for the lower tree against
the mounted view, byte for byte (an opaque directory aside: one marker instead of one
whiteout per hidden name, which applies to the same tree).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerdiff import DiffOptions, apply_layer, diff_trees
from layerdiff.compression import Compression
from layerdiff.errors import UnsupportedError
from tests.support.tree import diff_trees as tree_differences
from tests.support.tree import merged_view, mount, snapshot_tree, unmount

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("overlay mounts need root", allow_module_level=True)

T = 1_600_000_000_000_000_000


@dataclass
class Overlay:
    """A mounted overlay: lowerdirs (nearest first), upperdir, and the merged view."""

    lowers: list[Path]
    upper: Path
    merged: Path
    userxattr: bool

    def fast_layer(self) -> bytes:
        out = io.BytesIO()
        diff_trees(self.lowers, self.upper, out, DiffOptions(
            compression=Compression.NONE, upper_overlay=True, userxattr=self.userxattr
        ))
        return out.getvalue()

    def walked_layer(self) -> bytes:
        out = io.BytesIO()
        options = DiffOptions(compression=Compression.NONE)
        if len(self.lowers) == 1:
            diff_trees(self.lowers[0], self.merged, out, options)
        else:
            with merged_view(self.lowers[::-1], userxattr=self.userxattr) as lower:
                diff_trees(lower, self.merged, out, options)
        return out.getvalue()

    def apply_fast_layer_to_lowers(self, work: Path) -> list[str]:
        """Apply the fast layer onto a copy of the lowers' view; differences with merged."""
        target = work / "target"
        with merged_view(self.lowers[::-1], userxattr=self.userxattr) as lower:
            subprocess.run(["cp", "-a", f"{lower}/.", str(target)], check=True)
        apply_layer(io.BytesIO(self.fast_layer()), target)
        return tree_differences(snapshot_tree(self.merged), snapshot_tree(target),
                                ignore_atime=True)


def _build_lower(root: Path) -> None:
    for rel, data in {
        "etc/passwd": b"root:x:0:0\n",
        "etc/hosts": b"127.0.0.1 localhost\n",
        "usr/bin/tool": b"#!/bin/sh\n",
        "usr/lib/big/a": b"a" * 5000,
        "usr/lib/big/b": b"b",
        "var/cache/x": b"x",
        "var/cache/sub/y": b"y",
        "opt/keep": b"keep",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.link(root / "usr/lib/big/b", root / "usr/lib/big/b-link")
    os.setxattr(root / "opt", "user.tag", b"lower")
    (root / "bin").symlink_to("usr/bin")
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(Path(top, name), ns=(T, T), follow_symlinks=False)


@pytest.fixture
def overlay_factory(tmp_path: Path) -> Iterator[Callable[..., Overlay]]:
    mounted: list[Path] = []

    def make(layers: int = 1, *, userxattr: bool = False, options: str = "") -> Overlay:
        lowers = []
        for i in range(layers):
            lower = tmp_path / f"lower{i}"
            lower.mkdir()
            lowers.append(lower)
        _build_lower(lowers[-1])  # the deepest holds the tree; nearer ones add to it
        for i, lower in enumerate(lowers[:-1]):
            (lower / "etc").mkdir()
            (lower / "etc" / f"from-layer-{i}").write_text("x")
        upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "merged"
        for d in (upper, work, merged):
            d.mkdir()
        data = (f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
                + (",userxattr" if userxattr else "") + options)
        mount("overlay", merged, "overlay", 0, data)
        mounted.append(merged)
        return Overlay(lowers, upper, merged, userxattr)

    yield make
    for point in mounted:
        unmount(point)


def _typical_changes(m: Path) -> None:
    """What a package install and some configuration do, through the mount."""
    with open(m / "etc/passwd", "a") as f:
        f.write("user:x:1000:1000\n")
    (m / "etc/hostname").write_text("box\n")
    os.setxattr(m / "etc/hosts", "user.edited", b"1")
    (m / "usr/bin/tool").chmod(0o4755)
    os.chown(m / "usr/lib/big/a", 0, 0)  # the same owner: copied up, yet unchanged
    (m / "usr/lib/big/b").unlink()
    shutil.rmtree(m / "var/cache")
    (m / "usr/share/doc/pkg").mkdir(parents=True)
    (m / "usr/share/doc/pkg/README").write_text("read me")
    os.link(m / "usr/share/doc/pkg/README", m / "usr/share/doc/pkg/README.link")
    (m / "usr/share/doc/pkg/latest").symlink_to("README")
    os.mkfifo(m / "usr/share/doc/pkg/fifo")
    os.utime(m / "opt/keep", ns=(T, T + 7))


@pytest.mark.parametrize("layers", [1, 3])
def test_the_fast_path_gives_the_double_walks_bytes(
    overlay_factory: Callable[..., Overlay], layers: int
) -> None:
    overlay = overlay_factory(layers)
    _typical_changes(overlay.merged)
    layer = overlay.fast_layer()
    assert layer == overlay.walked_layer()
    assert b".wh.cache" in layer and b"README.link" in layer


def test_userxattr_overlays_keep_their_markers_out_of_the_layer(
    overlay_factory: Callable[..., Overlay],
) -> None:
    overlay = overlay_factory(userxattr=True)
    _typical_changes(overlay.merged)
    os.setxattr(overlay.merged / "etc/passwd", "user.overlay.mine", b"data")
    assert any(
        name.startswith("user.overlay.") for name in os.listxattr(overlay.upper / "etc/passwd")
    )
    layer = overlay.fast_layer()
    assert layer == overlay.walked_layer()
    assert b"SCHILY.xattr.user.overlay.mine=data" in layer
    assert b"origin" not in layer and b"impure" not in layer


def test_an_opaque_directory_is_one_marker_that_applies_to_the_same_tree(
    overlay_factory: Callable[..., Overlay], tmp_path: Path
) -> None:
    overlay = overlay_factory(2)
    _typical_changes(overlay.merged)
    shutil.rmtree(overlay.merged / "etc")
    (overlay.merged / "etc").mkdir()
    (overlay.merged / "etc/passwd").write_text("new\n")
    layer = overlay.fast_layer()
    assert b"etc/.wh..wh..opq" in layer and b"etc/.wh.hosts" not in layer
    assert b"etc/.wh.hosts" in overlay.walked_layer()
    assert overlay.apply_fast_layer_to_lowers(tmp_path) == []


def test_a_lower_directory_that_lost_an_xattr_is_written_with_its_lower_entries(
    overlay_factory: Callable[..., Overlay], tmp_path: Path
) -> None:
    overlay = overlay_factory(2)
    os.removexattr(overlay.merged / "opt", "user.tag")
    (overlay.merged / "opt/new").write_text("n")
    layer = overlay.fast_layer()
    assert layer == overlay.walked_layer()
    assert b"opt/keep" in layer  # only the lowerdir has it
    assert overlay.apply_fast_layer_to_lowers(tmp_path) == []


def test_whiteouts_of_names_no_lowerdir_has_are_dropped(
    overlay_factory: Callable[..., Overlay],
) -> None:
    overlay = overlay_factory()
    os.mknod(overlay.upper / "never-was", 0o600 | 0o020000, 0)
    assert b"never-was" not in overlay.fast_layer()


@pytest.mark.parametrize(
    ("options", "change", "feature"),
    [
        (",redirect_dir=on", lambda m: os.rename(m / "usr/lib", m / "usr/lib2"), "redirect_dir"),
        (",metacopy=on", lambda m: (m / "usr/bin/tool").chmod(0o700), "metacopy"),
    ],
)
def test_entries_partly_in_a_lowerdir_are_refused(
    overlay_factory: Callable[..., Overlay],
    options: str,
    change: Callable[[Path], object],
    feature: str,
) -> None:
    try:
        overlay = overlay_factory(options=options)
    except OSError as err:
        pytest.skip(f"this kernel refuses {options}: {err}")
    change(overlay.merged)
    with pytest.raises(UnsupportedError, match=feature):
        overlay.fast_layer()
