"""Applying layers onto mounts and computing layers from mounts, with real mounts.

A ``temp_root`` that does not exist proves that a dispatch mounted nothing: making a
temporary mount point there would fail.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import pytest

from layerdiff import ApplyOptions, DiffOptions, apply_layer
from layerdiff.compression import Compression
from layerdiff.differ import apply_to_mounts, compare_mounts
from layerdiff.differ.compare import overlay_fast_path
from layerdiff.errors import LayerdiffError, TargetError
from layerdiff.mount import Mount
from layerdiff.oci import MEDIA_TYPE_LAYER_GZIP, Descriptor
from tests.support.layers import gzip, layer
from tests.support.tree import diff_trees, merged_view, snapshot_tree

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("mounting needs root", allow_module_level=True)

NOWHERE = "/nonexistent/layerdiff-temp-root"

LAYERS = [
    layer(("dir", "etc/"), ("file", "etc/a", {"data": b"a"}), ("file", "etc/b", {"data": b"b"}),
          ("dir", "d/"), ("file", "d/x", {"data": b"x"}), ("dir", "usr/"), ("dir", "usr/bin/"),
          ("symlink", "bin", {"linkname": "usr/bin"})),
    layer(("file", "etc/.wh.a"), ("file", "bin/ls", {"data": b"ls"}),
          ("dir", "d/"), ("file", "d/.wh..wh..opq"), ("file", "d/y", {"data": b"y"})),
    layer(("file", "etc/b", {"data": b"b2"}), ("file", ".wh.d"), ("hardlink", "etc/c",
          {"linkname": "etc/b"})),
]


def bind(path: Path, *options: str) -> list[Mount]:
    return [Mount("bind", str(path), options=("rbind", *options))]


def overlay_mounts(uppers: list[Path], work: Path, **extra: str) -> list[Mount]:
    """The mounts containerd's overlay snapshotter gives for a new layer over ``uppers``."""
    lowers = ":".join(str(u) for u in reversed(uppers[:-1]))
    return [Mount("overlay", "overlay", options=(
        f"lowerdir={lowers}", f"upperdir={uppers[-1]}", f"workdir={work}",
        *(f"{k}={v}" for k, v in extra.items())))]


def naive(tmp: Path, layers: list[bytes]) -> Path:
    target = tmp / "naive"
    target.mkdir()
    for blob in layers:
        apply_layer(io.BytesIO(blob), target)
    return target


def apply_as_snapshotter(tmp: Path, layers: list[bytes], name: str = "s") -> list[Path]:
    """Apply ``layers`` as containerd does with its overlay snapshotter, through mounts."""
    uppers: list[Path] = []
    for i, blob in enumerate(layers):
        upper = tmp / f"{name}{i}"
        upper.mkdir()
        uppers.append(upper)
        if i == 0:  # the first snapshot is handed over as a bind mount
            apply_to_mounts(io.BytesIO(blob), bind(upper, "rw"), temp_root=str(tmp))
        else:
            work = tmp / f"{name}-work{i}"
            work.mkdir()
            apply_to_mounts(io.BytesIO(blob), overlay_mounts(uppers, work), temp_root=NOWHERE)
    return uppers


def test_overlay_dispatch_gives_the_naive_merged_view(tmp_path: Path) -> None:
    uppers = apply_as_snapshotter(tmp_path, LAYERS)
    assert stat.S_ISCHR(os.lstat(uppers[1] / "etc" / "a").st_mode)  # written in overlay form
    assert os.getxattr(uppers[1] / "d", "trusted.overlay.opaque") == b"y"
    expected = snapshot_tree(naive(tmp_path, LAYERS))
    with merged_view(uppers) as view:
        assert diff_trees(expected, snapshot_tree(view), ignore_atime=True,
                              ignore_dir_mtimes=True) == []
    assert not any(p.name.startswith("layerdiff-mount-") for p in tmp_path.iterdir())


def test_overlay_dispatch_with_userxattr(tmp_path: Path) -> None:
    base = tmp_path / "s0"
    base.mkdir()
    apply_layer(io.BytesIO(LAYERS[0]), base)
    upper, work = tmp_path / "s1", tmp_path / "w"
    upper.mkdir()
    work.mkdir()
    mounts = [Mount("overlay", "overlay", options=(
        f"lowerdir={base}", f"upperdir={upper}", f"workdir={work}", "userxattr"))]
    apply_to_mounts(io.BytesIO(LAYERS[1]), mounts, temp_root=NOWHERE)
    assert os.getxattr(upper / "d", "user.overlay.opaque") == b"y"


def test_overlay_without_upperdir_is_mounted_and_fails_read_only(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    mounts = [Mount("overlay", "overlay", options=(f"lowerdir={lower}:{lower}",))]
    with pytest.raises(TargetError):
        apply_to_mounts(io.BytesIO(LAYERS[0]), mounts, temp_root=str(tmp_path))
    assert os.listdir(tmp_path) == ["lower"] and os.listdir(lower) == []


def test_aufs_dispatch_writes_aufs_whiteouts(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    apply_layer(io.BytesIO(LAYERS[0]), lower)
    mounts = [Mount("aufs", "none", options=(f"br:{upper}=rw:{lower}=ro+wh",))]
    apply_to_mounts(io.BytesIO(LAYERS[1]), mounts, temp_root=NOWHERE)
    assert (upper / "etc" / ".wh.a").is_file()
    assert (upper / "d" / ".wh..wh..opq").is_file()
    # As containerd's aufs applier: names are resolved in the branch alone.
    assert (upper / "bin" / "ls").is_file()


def test_aufs_with_other_options_falls_back_to_mounting(tmp_path: Path) -> None:
    # This kernel has no aufs: the fallback's mount fails, cleanly.
    mounts = [Mount("aufs", "none", options=("br:/x=ro",))]
    with pytest.raises(LayerdiffError):
        apply_to_mounts(io.BytesIO(LAYERS[0]), mounts, temp_root=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_naive_apply_through_a_bind_mount(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    for blob in LAYERS:
        apply_to_mounts(io.BytesIO(blob), bind(target), temp_root=str(tmp_path))
    expected = snapshot_tree(naive(tmp_path, LAYERS))
    # Directories a whiteout changed get the time of the apply.
    assert diff_trees(expected, snapshot_tree(target), ignore_atime=True,
                      ignore_dir_mtimes=True) == []
    assert sorted(os.listdir(tmp_path)) == ["naive", "target"]


def test_naive_apply_onto_tmpfs_with_a_nested_bind(tmp_path: Path) -> None:
    # The layer lands partly in a tmpfs (gone on unmount), partly in the bound "etc".
    etc = tmp_path / "etc"
    etc.mkdir()
    mounts = [Mount("tmpfs", "tmpfs", options=("size=4m",)),
              Mount("bind", str(etc), target="etc", options=("bind",))]
    # The tmpfs is empty: etc must exist before the bind; a first mount list makes it.
    with pytest.raises(LayerdiffError, match="etc"):
        apply_to_mounts(io.BytesIO(LAYERS[0]), mounts, temp_root=str(tmp_path))
    descriptor = apply_to_mounts(io.BytesIO(LAYERS[0]), mounts[:1], temp_root=str(tmp_path))
    assert descriptor == apply_layer(io.BytesIO(LAYERS[0]), naive(tmp_path, []))
    assert sorted(os.listdir(tmp_path)) == ["etc", "naive"]


def test_readonly_bind_fails_cleanly(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious").write_bytes(b"keep")
    with pytest.raises(TargetError, match="Read-only"):
        apply_to_mounts(io.BytesIO(LAYERS[0]), bind(target, "ro"), temp_root=str(tmp_path))
    assert os.listdir(target) == ["precious"] and sorted(os.listdir(tmp_path)) == ["target"]
    assert "layerdiff-mount-" not in Path("/proc/self/mountinfo").read_text()


def test_concurrent_applies_do_not_interfere(tmp_path: Path) -> None:
    expected = snapshot_tree(naive(tmp_path, LAYERS))
    errors: list[BaseException] = []
    results: dict[int, list[Path]] = {}

    def run(i: int) -> None:
        try:
            base = tmp_path / f"t{i}"
            base.mkdir()
            results[i] = apply_as_snapshotter(base, LAYERS)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for uppers in results.values():
        with merged_view(uppers) as view:
            assert diff_trees(expected, snapshot_tree(view), ignore_atime=True,
                              ignore_dir_mtimes=True) == []


# --------------------------------------------------------------------------- compare


def _compare(lower: list[Mount], upper: list[Mount], temp_root: str) -> tuple[bytes, Descriptor]:
    out = io.BytesIO()
    descriptor = compare_mounts(lower, upper, out, DiffOptions(compression=Compression.NONE),
                                temp_root=temp_root)
    return out.getvalue(), descriptor


def test_compare_fast_path_equals_the_double_walk(tmp_path: Path) -> None:
    # Layers without opaque directories: both ways give the same bytes.
    layers = [LAYERS[0], layer(("file", "etc/.wh.a"), ("file", "etc/b", {"data": b"b2"}),
                               ("file", "new", {"data": b"n"}))]
    uppers = apply_as_snapshotter(tmp_path, layers)
    work = tmp_path / "cmp-work"
    work.mkdir()
    upper = overlay_mounts(uppers, work)
    fast, fast_desc = _compare(bind(uppers[0], "ro"), upper, NOWHERE)
    # The same lower reached through a symlink is not recognised as the upper's
    # lowerdir: both are mounted and walked.
    (tmp_path / "link").symlink_to(uppers[0])
    assert overlay_fast_path(bind(tmp_path / "link", "ro"), upper) is None
    walked, walked_desc = _compare(bind(tmp_path / "link", "ro"), upper, str(tmp_path))
    assert fast == walked and fast_desc == walked_desc
    assert fast_desc.annotations is not None


def test_compare_fast_path_layer_applies_to_the_upper_view(tmp_path: Path) -> None:
    uppers = apply_as_snapshotter(tmp_path, LAYERS[:2])
    work = tmp_path / "cmp-work"
    work.mkdir()
    fast, _ = _compare(bind(uppers[0], "ro"), overlay_mounts(uppers, work), NOWHERE)
    target = naive(tmp_path, LAYERS[:1])
    apply_layer(io.BytesIO(fast), target)
    with merged_view(uppers) as view:
        assert diff_trees(snapshot_tree(view), snapshot_tree(target), ignore_atime=True) == []


def test_compare_bind_mounts_and_an_empty_lower(tmp_path: Path) -> None:
    lower = naive(tmp_path, LAYERS[:1])
    upper = tmp_path / "upper"
    upper.mkdir()
    for blob in LAYERS[:2]:
        apply_layer(io.BytesIO(blob), upper)
    data, descriptor = _compare(bind(lower), bind(upper, "rw"), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["naive", "upper"]
    replay = tmp_path / "replay"
    replay.mkdir()
    apply_layer(io.BytesIO(LAYERS[0]), replay)
    apply_layer(io.BytesIO(data), replay)
    assert diff_trees(snapshot_tree(upper), snapshot_tree(replay), ignore_atime=True) == []
    everything, _ = _compare([], bind(upper), str(tmp_path))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    apply_layer(io.BytesIO(everything), fresh, ApplyOptions())
    assert diff_trees(snapshot_tree(upper), snapshot_tree(fresh), ignore_atime=True) == []
    assert descriptor.digest.startswith("sha256:")


def test_media_type_and_sync_fs_pass_through(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    blob = gzip(LAYERS[0])
    applied = apply_to_mounts(io.BytesIO(blob), bind(target), temp_root=str(tmp_path),
                              media_type=MEDIA_TYPE_LAYER_GZIP, sync_fs=True)
    assert applied == apply_layer(io.BytesIO(LAYERS[0]), naive(tmp_path, []))
    uppers = apply_as_snapshotter(tmp_path, LAYERS[:1], name="o")
    work, upper = tmp_path / "o-work", tmp_path / "o1"
    work.mkdir()
    upper.mkdir()
    apply_to_mounts(io.BytesIO(gzip(LAYERS[1])), overlay_mounts([*uppers, upper], work),
                    temp_root=NOWHERE, media_type=MEDIA_TYPE_LAYER_GZIP, sync_fs=True)
    assert (upper / "d" / "y").read_bytes() == b"y"
