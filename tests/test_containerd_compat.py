"""layerdiff unpacks exactly as containerd 1.7 does — checked against the real daemon.

For every case, containerd imports an image of the layers with its native snapshotter
(the full tree after each layer) and with its overlayfs snapshotter (one upperdir per
layer); layerdiff applies the same layers in naive and in overlay mode; the trees must
be equal in every attribute an unpack decides. Where containerd refuses a layer,
layerdiff must refuse it too. Where containerd's overlay form is known to break the
equality "merged view == naive result" (docs/semantics.md), layerdiff's merged view is
compared with containerd's naive tree instead.

Not compared, because no unpacker controls them: access times of directories and
symlinks, times of directories that a layer implies without an entry (they get the
time of the unpack), directory times after the first layer with the native snapshotter
(it copies the parent snapshot first, and the copy does not keep directory times), file
access times of native snapshots below the top one (that copy reads the files), and the
times of overlay whiteouts.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from layerdiff import LayerdiffError, apply_layer
from tests.support.compat_cases import (
    CASES,
    OVERLAY_DEVIATES,
    entry_names,
    unlisted_dirs,
    whiteouts,
)
from tests.support.containerd import Containerd, ContainerdUnpackError
from tests.support.layers import apply_overlay_stack
from tests.support.tree import EntryInfo, diff_trees, merged_view, snapshot_tree

pytestmark = [pytest.mark.containerd, pytest.mark.root]


def _apply_naive(layers: list[bytes], dest: Path) -> list[dict[str, EntryInfo]]:
    dest.mkdir()
    trees = []
    for blob in layers:
        apply_layer(io.BytesIO(blob), dest)
        trees.append(snapshot_tree(dest))
    return trees


@pytest.mark.parametrize(("layers", "note"), CASES.values(), ids=CASES.keys())
def test_naive_mode_matches_containerd_native_snapshotter(
    containerd: Containerd, layers: list[bytes], note: str, tmp_path: Path
) -> None:
    try:
        theirs = containerd.unpack(layers, "native")
    except ContainerdUnpackError:
        with pytest.raises(LayerdiffError):
            _apply_naive(layers, tmp_path / "ours")
        return
    ours = _apply_naive(layers, tmp_path / "ours")
    listed: set[str] = set()
    for i, (blob, our_tree, their_dir) in enumerate(zip(layers, ours, theirs, strict=True)):
        listed |= entry_names(blob)
        their_tree = snapshot_tree(their_dir)
        problems = diff_trees(
            their_tree,
            our_tree,
            ignore_mtime=unlisted_dirs(their_tree, listed),
            ignore_dir_mtimes=i > 0,
            ignore_atime=i < len(layers) - 1,
        )
        assert problems == [], f"after layer {i}"


@pytest.mark.parametrize(("layers", "note"), CASES.values(), ids=CASES.keys())
def test_overlay_mode_matches_containerd_overlayfs_snapshotter(
    containerd: Containerd, layers: list[bytes], note: str, tmp_path: Path
) -> None:
    if note == OVERLAY_DEVIATES:
        # containerd's overlay form is wrong here: the merged view must equal its naive tree.
        naive = containerd.unpack(layers, "native")[-1]
        uppers = apply_overlay_stack(layers, tmp_path)
        with merged_view(uppers) as merged:
            naive_tree, merged_tree = snapshot_tree(naive), snapshot_tree(merged)
        assert diff_trees(naive_tree, merged_tree, ignore_dir_mtimes=True) == []
        return
    try:
        theirs = containerd.unpack(layers, "overlayfs")
    except ContainerdUnpackError:
        with pytest.raises(LayerdiffError):
            apply_overlay_stack(layers, tmp_path)
        return
    ours = apply_overlay_stack(layers, tmp_path)
    for i, (our_dir, their_dir) in enumerate(zip(ours, theirs, strict=True)):
        listed = entry_names(layers[i])
        their_tree, our_tree = snapshot_tree(their_dir), snapshot_tree(our_dir)
        unlisted = unlisted_dirs(their_tree, listed) + whiteouts(their_tree)
        assert diff_trees(their_tree, our_tree, ignore_mtime=unlisted) == [], f"layer {i}"
