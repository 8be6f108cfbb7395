"""Overlay form is faithful: the mounted merged view equals the naive result.

Each case is a sequence of layers. Naive: all applied into one directory. Overlay: the
first into its own directory (containerd's overlay snapshotter hands the first layer
over as a bind mount, so it is applied naively), each next one into a fresh upperdir in
overlay mode with the earlier ones as parents; then the upperdirs are mounted as an
overlay and the merged view is compared with the naive tree. These are the places
where containerd's overlay applier breaks that equality (see docs/semantics.md).
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from layerdiff import ApplyOptions, WhiteoutMode, apply_layer
from tests.support.layers import apply_overlay_stack
from tests.support.tree import diff_trees, merged_view, snapshot_tree

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs needs root"),
]

Entry = tuple[str, str, str]  # (kind, name, data or link target)


def _layer(*entries: Entry) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for kind, name, arg in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            data = b""
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "file":
                data = arg.encode()
                info.size, info.mode = len(data), 0o644
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "hardlink":
                info.type, info.linkname, info.mode = tarfile.LNKTYPE, arg, 0o644
            archive.addfile(info, io.BytesIO(data) if data else None)
    return out.getvalue()


CASES: dict[str, list[bytes]] = {
    "usrmerge: write through a lower symlink": [
        _layer(("dir", "usr/", ""), ("dir", "usr/bin/", ""), ("symlink", "bin", "usr/bin")),
        _layer(("file", "bin/ls", "ls")),
    ],
    "whiteout after its file in the same layer": [
        _layer(("file", "a", "old")),
        _layer(("file", "a", "new"), ("file", ".wh.a", "")),
    ],
    "directory deleted and recreated in one layer": [
        _layer(("dir", "d/", ""), ("file", "d/old", "old")),
        _layer(("file", ".wh.d", ""), ("dir", "d/", ""), ("file", "d/new", "new")),
    ],
    "directory deleted, then a child written without its directory entry": [
        _layer(("dir", "d/", ""), ("file", "d/old", "old")),
        _layer(("file", ".wh.d", ""), ("file", "d/new", "new")),
    ],
    "opaque marker at the layer root": [
        _layer(("file", "x", "x"), ("dir", "y/", ""), ("file", "y/z", "z")),
        _layer(("file", ".wh..wh..opq", ""), ("file", "kept", "k")),
    ],
    "opaque marker among a directory's entries": [
        _layer(("dir", "d/", ""), ("file", "d/a", "a")),
        _layer(("dir", "d/", ""), ("file", "d/b", "b"), ("file", "d/.wh..wh..opq", "")),
    ],
    "hardlink to a file of a lower layer": [
        _layer(("file", "f", "content")),
        _layer(("hardlink", "g", "f")),
    ],
    "whiteout of a path that does not exist": [
        _layer(("file", "f", "content")),
        _layer(("file", ".wh.ghost", "")),
    ],
    "three layers: delete in the second, recreate in the third": [
        _layer(("dir", "d/", ""), ("file", "d/a", "a")),
        _layer(("file", ".wh.d", "")),
        _layer(("dir", "d/", ""), ("file", "d/b", "b")),
    ],
}


@pytest.mark.parametrize("layers", CASES.values(), ids=CASES.keys())
def test_merged_overlay_view_equals_naive_result(layers: list[bytes], tmp_path: Path) -> None:
    naive = tmp_path / "naive"
    naive.mkdir()
    for layer in layers:
        apply_layer(io.BytesIO(layer), naive)

    uppers = apply_overlay_stack(layers, tmp_path)

    with merged_view(uppers) as merged:
        assert diff_trees(snapshot_tree(naive), snapshot_tree(merged), ignore_dir_mtimes=True) == []


def test_layer_overlay_xattrs_are_escaped_with_userxattr(tmp_path: Path) -> None:
    """A layer's own ``user.overlay.opaque`` must not turn into an overlay instruction."""
    lower, upper, naive = tmp_path / "lower", tmp_path / "upper", tmp_path / "naive"
    for d in (lower, upper, naive):
        d.mkdir()
    first = _layer(("dir", "d/", ""), ("file", "d/old", "old"))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("d/")
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
        info.pax_headers = {"SCHILY.xattr.user.overlay.opaque": "y"}
        archive.addfile(info)
    second = out.getvalue()

    for blob in (first, second):
        apply_layer(io.BytesIO(blob), naive)
    apply_layer(io.BytesIO(first), lower)
    options = ApplyOptions(mode=WhiteoutMode.OVERLAY, userxattr=True, parents=[str(lower)])
    apply_layer(io.BytesIO(second), upper, options)

    assert os.getxattr(upper / "d", "user.overlay.overlay.opaque") == b"y"
    with merged_view([lower, upper], userxattr=True) as merged:
        assert (merged / "d" / "old").read_text() == "old"  # not hidden by the layer's xattr
        assert os.getxattr(merged / "d", "user.overlay.opaque") == b"y"
        assert diff_trees(snapshot_tree(naive), snapshot_tree(merged), ignore_dir_mtimes=True) == []
