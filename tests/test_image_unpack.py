"""``unpack_image``: the same trees as containerd 1.7 from every image form, in both
modes; verification errors that name the layer and both digests; the journal."""

from __future__ import annotations

import fcntl
import io
import os
from pathlib import Path

import pytest

from layerdiff.errors import (
    CorruptLayerError,
    FailedPreconditionError,
    InvalidArgumentError,
    UnavailableError,
)
from layerdiff.image import UnpackResult, open_image, unpack_image
from layerdiff.image.reapply import reapplicable
from tests.support import images
from tests.support.compat_cases import (
    BASE,
    CASES,
    OVERLAY_DEVIATES,
    entry_names,
    unlisted_dirs,
    whiteouts,
)
from tests.support.containerd import Containerd
from tests.support.layers import gzip, layer, zstd
from tests.support.ocilayout import MEDIA_TYPE_LAYER_GZIP, sha256_digest
from tests.support.tree import diff_trees, mount, snapshot_tree, unmount

#: Snapshots mode writes whiteout devices and trusted.* xattrs: root only.
MODES = ["flat", pytest.param("snapshots", marks=pytest.mark.root)]
FORMS = ("oci-layout", "oci-archive", "docker-save", "docker-save-blobs")
# A few of the applier's compatibility cases: enough to see every layer reach the
# applier in order, compressed or not, with whiteouts and opaque directories.
COMPAT = [
    "ordinary root file system",
    "gzip and zstd layers",
    "every entry type",
    "whiteouts of files and directories",
    "opaque marker first",
    "replacing types",
    "hardlink to a file of a lower layer",
]
THREE = [
    gzip(BASE),
    zstd(layer(("file", "etc/hostname", {"data": b"box"}), ("file", "d/.wh.a"))),
    layer(("dir", "d/"), ("file", "d/.wh..wh..opq"), ("file", "d/new", {"data": b"n"})),
]


def _unpack(path: str, dest: Path, mode: str = "flat", *, start_over: bool = False
            ) -> UnpackResult:
    source = open_image(path)
    try:
        return unpack_image(source, dest, mode=mode, start_over=start_over)
    finally:
        source.close()


# ------------------------------------------------------------------------ containerd


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", COMPAT)
def test_flat_unpack_matches_containerd(
    containerd: Containerd, tmp_path: Path, case: str, form: str
) -> None:
    layers = CASES[case][0]
    theirs = snapshot_tree(containerd.unpack(layers, "native")[-1])
    path = images.all_forms(images.make_image(layers), tmp_path)[form]
    _unpack(path, tmp_path / "rootfs")
    listed = set().union(*(entry_names(b) for b in layers))
    problems = diff_trees(
        theirs,
        snapshot_tree(tmp_path / "rootfs"),
        ignore_mtime=unlisted_dirs(theirs, listed),
        ignore_dir_mtimes=len(layers) > 1,
    )
    assert problems == []


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("case", [c for c in COMPAT if CASES[c][1] != OVERLAY_DEVIATES])
def test_snapshots_unpack_matches_containerd_overlayfs(
    containerd: Containerd, tmp_path: Path, case: str, form: str
) -> None:
    layers = CASES[case][0]
    theirs = containerd.unpack(layers, "overlayfs")
    path = images.all_forms(images.make_image(layers), tmp_path)[form]
    _unpack(path, tmp_path / "layers", "snapshots")
    for i, their_dir in enumerate(theirs):
        their_tree = snapshot_tree(their_dir)
        our_tree = snapshot_tree(tmp_path / "layers" / str(i + 1))
        unlisted = unlisted_dirs(their_tree, entry_names(layers[i])) + whiteouts(their_tree)
        assert diff_trees(their_tree, our_tree, ignore_mtime=unlisted) == [], f"layer {i}"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting an overlay needs root")
def test_the_printed_mount_options_mount_the_flat_tree(tmp_path: Path) -> None:
    img = images.make_image(THREE)
    path = images.all_forms(img, tmp_path)["oci-archive"]
    _unpack(path, tmp_path / "flat")
    result = _unpack(path, tmp_path / "snap", "snapshots")
    options = result.mount_options
    assert options == (
        f"lowerdir={tmp_path}/snap/3:{tmp_path}/snap/2:{tmp_path}/snap/1,"
        f"upperdir={tmp_path}/snap/upper,workdir={tmp_path}/snap/work"
    )
    target = tmp_path / "merged"
    target.mkdir()
    mount("overlay", target, "overlay", 0, options)
    try:
        merged = snapshot_tree(target)
    finally:
        unmount(target)
    assert diff_trees(snapshot_tree(tmp_path / "flat"), merged, ignore_dir_mtimes=True) == []


def test_every_form_gives_the_same_tree(tmp_path: Path) -> None:
    img = images.make_image(THREE)
    trees = {}
    for form, path in images.all_forms(img, tmp_path).items():
        _unpack(path, tmp_path / form)
        trees[form] = snapshot_tree(tmp_path / form)
    first = trees.pop("oci-layout")
    for form, tree in trees.items():
        assert diff_trees(first, tree, ignore_dir_mtimes=True) == [], form


# ------------------------------------------------------------------------ verification


def _swap_layer_blob(root: Path, digest: str, data: bytes) -> None:
    (root / "blobs/sha256" / digest.removeprefix("sha256:")).write_bytes(data)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("damage", ["other bytes", "flipped byte"])
def test_blob_digest_mismatch_names_layer_and_digests(
    tmp_path: Path, mode: str, damage: str
) -> None:
    images.skip_unless_root(mode)
    img = images.make_image(THREE)
    root = images.write_dir(images.layout_files([img]), tmp_path / "layout")
    bad = img.layers[1]
    if damage == "other bytes":
        data = zstd(layer(("file", "etc/hostname", {"data": b"bad"}), ("file", "d/.wh.b")))
        data = data[: len(bad.blob)].ljust(len(bad.blob), b"\0")
    else:
        flipped = bytearray(bad.blob)
        flipped[len(flipped) // 2] ^= 0xFF
        data = bytes(flipped)
    actual = sha256_digest(data)
    _swap_layer_blob(root, bad.digest, data)
    with pytest.raises(CorruptLayerError) as err:
        _unpack(str(root), tmp_path / "out", mode)
    message = str(err.value)
    assert f"layer 1 ({bad.digest})" in message
    assert f"blob has digest {actual}, expected {bad.digest}" in message
    _assert_nothing_after_layer_1(tmp_path / "out", mode)


def _assert_nothing_after_layer_1(dest: Path, mode: str) -> None:
    if mode == "flat":
        assert not (dest / "d/new").exists()  # layer 2's file
    else:
        assert sorted(os.listdir(dest)) == ["1", "layerdiff-unpack.json"]


def test_blob_size_mismatch_names_layer(tmp_path: Path) -> None:
    img = images.make_image(THREE)
    root = images.write_dir(images.layout_files([img]), tmp_path / "layout")
    bad = img.layers[1]
    _swap_layer_blob(root, bad.digest, bad.blob + b"\0")
    with pytest.raises(CorruptLayerError, match=f"{bad.digest} has {len(bad.blob) + 1} bytes"):
        _unpack(str(root), tmp_path / "out")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["oci-layout", "docker-save"])
def test_diff_id_mismatch_names_layer_and_both_digests(
    tmp_path: Path, mode: str, form: str
) -> None:
    images.skip_unless_root(mode)
    real = images.make_image(THREE)
    wrong = "sha256:" + "0" * 64
    img = images.make_image(THREE, diff_ids=[real.diff_ids[0], wrong, real.diff_ids[2]])
    path = images.all_forms(img, tmp_path)[form]
    with pytest.raises(CorruptLayerError) as err:
        _unpack(path, tmp_path / "out", mode)
    message = str(err.value)
    blob = img.layers[1].digest if form == "oci-layout" else wrong
    assert f"layer 1 ({blob})" in message
    assert f"its diffID is {real.diff_ids[1]}, the image config expects {wrong}" in message
    _assert_nothing_after_layer_1(tmp_path / "out", mode)


# ------------------------------------------------------------------------------ journal


@pytest.mark.root
def test_rerun_of_a_finished_unpack_skips_every_layer(tmp_path: Path) -> None:
    images.skip_unless_root()
    path = images.all_forms(images.make_image(THREE), tmp_path)["oci-archive"]
    for mode in ("flat", "snapshots"):
        assert _unpack(path, tmp_path / mode, mode).resumed == 0
        before = snapshot_tree(tmp_path / mode)
        assert _unpack(path, tmp_path / mode, mode).resumed == 3
        after = snapshot_tree(tmp_path / mode)
        assert diff_trees(before, after, ignore_mtime=["layerdiff-unpack.json"]) == []


@pytest.mark.root
def test_the_same_image_in_another_form_resumes(tmp_path: Path) -> None:
    images.skip_unless_root()
    forms = images.all_forms(images.make_image(THREE), tmp_path)
    _unpack(forms["oci-layout"], tmp_path / "out", "snapshots")
    assert _unpack(forms["docker-save"], tmp_path / "out", "snapshots").resumed == 3


@pytest.mark.parametrize("mode", MODES)
def test_another_images_unpack_is_refused_unless_starting_over(tmp_path: Path, mode: str) -> None:
    images.skip_unless_root(mode)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = images.all_forms(images.make_image(THREE), tmp_path / "a")["oci-archive"]
    other = images.make_image([layer(("file", "only", {"data": b"o"}))])
    two = images.all_forms(other, tmp_path / "b")["oci-archive"]
    _unpack(one, tmp_path / "out", mode)
    with pytest.raises(FailedPreconditionError, match=f"holds a {mode} unpack of image"):
        _unpack(two, tmp_path / "out", mode)
    _unpack(two, tmp_path / "out", mode, start_over=True)
    if mode == "flat":
        assert sorted(os.listdir(tmp_path / "out")) == ["only"]
    else:
        assert sorted(os.listdir(tmp_path / "out/1")) == ["only"]
        assert not (tmp_path / "out/2").exists()


def test_a_non_empty_dest_without_journal_is_refused(tmp_path: Path) -> None:
    path = images.all_forms(images.make_image(THREE), tmp_path)["oci-archive"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out/precious").write_text("keep")
    for start_over in (False, True):
        with pytest.raises(FailedPreconditionError, match="not empty and holds no unpack journal"):
            _unpack(path, tmp_path / "out", start_over=start_over)
    assert (tmp_path / "out/precious").read_text() == "keep"


@pytest.mark.root
def test_start_over_redoes_the_same_image(tmp_path: Path) -> None:
    images.skip_unless_root()
    path = images.all_forms(images.make_image(THREE), tmp_path)["oci-archive"]
    _unpack(path, tmp_path / "out", "snapshots")
    assert _unpack(path, tmp_path / "out", "snapshots", start_over=True).resumed == 0


def test_a_second_unpack_into_the_same_dest_at_once_is_refused(tmp_path: Path) -> None:
    path = images.all_forms(images.make_image(THREE), tmp_path)["oci-archive"]
    (tmp_path / "out").mkdir()
    fd = os.open(tmp_path / "out", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(UnavailableError, match="another unpack"):
            _unpack(path, tmp_path / "out")
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "journal",
    ['{"image": 1, "platform": "p", "mode": "snapshots", "diff_ids": []}',
     '{"image": "i", "platform": "p", "mode": "snapshots", "diff_ids": [], "done": "x"}',
     "[]", "{not json"],
)
def test_malformed_journals_are_refused(tmp_path: Path, journal: str) -> None:
    path = images.all_forms(images.make_image(THREE), tmp_path)["oci-archive"]
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap/layerdiff-unpack.json").write_text(journal)
    with pytest.raises(FailedPreconditionError, match="start over"):
        _unpack(path, tmp_path / "snap", "snapshots")


def test_bad_mode_and_unreadable_journal(tmp_path: Path) -> None:
    path = images.all_forms(images.make_image(THREE), tmp_path)["oci-archive"]
    with pytest.raises(InvalidArgumentError, match="unpack mode"):
        _unpack(path, tmp_path / "out", "merged")
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap/layerdiff-unpack.json").write_text("{not json")
    with pytest.raises(FailedPreconditionError, match="unreadable unpack journal"):
        _unpack(path, tmp_path / "snap", "snapshots")


# ------------------------------------------------------------- re-applying in flat mode

REAPPLY = {
    "plain files and directories": (layer(("dir", "a/"), ("file", "a/f")), True),
    "whiteouts and opaque directories": (
        layer(("file", ".wh.x"), ("dir", "d/"), ("file", "d/.wh..wh..opq"), ("file", "d/n")),
        True,
    ),
    "whiteout after its file": (layer(("file", "n"), ("file", ".wh.n")), True),
    "directory deleted and recreated": (layer(("file", ".wh.d"), ("dir", "d/"), ("file", "d/n")),
                                        True),
    "hardlink to an earlier entry": (layer(("file", "f"), ("hardlink", "g", {"linkname": "f"})),
                                     True),
    "hardlink to a lower file": (layer(("hardlink", "g", {"linkname": "etc/passwd"})), False),
    "symlink over a path written before": (
        layer(("file", "usr/lib/x"), ("symlink", "usr/lib", {"linkname": "lib2"})),
        False,
    ),
    "directory over a path written through": (
        layer(("file", "bin/x"), ("dir", "bin/")),
        False,
    ),
    "whiteout of a parent written before": (layer(("file", "p/x"), ("file", ".wh.p")), False),
}


@pytest.mark.parametrize(("blob", "safe"), REAPPLY.values(), ids=REAPPLY.keys())
def test_reapplicable(blob: bytes, safe: bool) -> None:
    assert reapplicable(io.BytesIO(blob), None) is safe
    assert reapplicable(io.BytesIO(gzip(blob)), MEDIA_TYPE_LAYER_GZIP) is safe


def test_encrypted_or_unreadable_layers_are_not_reapplied() -> None:
    blob = layer(("file", "f"))
    assert not reapplicable(io.BytesIO(blob), "application/vnd.oci.image.layer.v1.tar+encrypted")
    assert not reapplicable(io.BytesIO(b"\x1f\x8b\x08garbage"), None)
