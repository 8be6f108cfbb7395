"""Real mounts: bind, tmpfs, overlay (long lowerdirs too), loop devices, helpers, cleanup."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from layerdiff.errors import InvalidArgumentError, NotFoundError, TargetError, UnsupportedError
from layerdiff.mount import Mount, mount_all, temporary_mount, unmount_all, unmount_mounts
from layerdiff.mount.overlay import mount_compacted

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("mounting needs root", allow_module_level=True)


def mounted(path: Path | str) -> list[str]:
    """The mountinfo lines of mounts whose mount point is ``path``."""
    point = os.path.realpath(path)
    with open("/proc/self/mountinfo") as info:
        return [line for line in info if line.split()[4] == point]


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_bind_mount_shows_and_writes_through(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a": b"1", "d/b": b"2"})
    with temporary_mount([Mount("bind", str(src), options=("rbind", "rw"))],
                         root=tmp_path) as root:
        assert mounted(root)
        assert sorted(os.listdir(root)) == ["a", "d"]
        Path(root, "new").write_bytes(b"3")
    assert not mounted(root) and not os.path.exists(root)
    assert (src / "new").read_bytes() == b"3"


def test_readonly_bind_refuses_writes(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a": b"1"})
    with temporary_mount([Mount("bind", str(src), options=("rbind", "ro"))],
                         root=tmp_path) as root:
        assert Path(root, "a").read_bytes() == b"1"
        with pytest.raises(OSError, match="Read-only"):
            Path(root, "b").write_bytes(b"")
    # ``readonly=True`` makes a writable mount read-only the same way.
    rw = [Mount("bind", str(src), options=("rbind",))]
    with temporary_mount(rw, root=tmp_path, readonly=True) as root, pytest.raises(
        OSError, match="Read-only"
    ):
        Path(root, "b").write_bytes(b"")
    assert os.listdir(tmp_path) == ["src"]


def test_tmpfs_with_flags_data_and_a_nested_mount(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"inner": b"x"})
    mounts = [
        Mount("tmpfs", "tmpfs", options=("nosuid", "nodev", "size=1m", "mode=0750")),
        Mount("bind", str(src), target="sub", options=("bind", "ro")),
    ]
    point = tmp_path / "point"
    point.mkdir()
    mount_all(mounts[:1], point)
    try:
        (point / "sub").mkdir()
        mounts[1].mount(str(point))
        [line] = mounted(point)
        assert "nosuid" in line and "nodev" in line and "size=1024k" in line
        assert stat.S_IMODE(os.stat(point).st_mode) == 0o750
        assert (point / "sub" / "inner").read_bytes() == b"x"
        assert mounted(point / "sub")
    finally:
        unmount_mounts(mounts, point)
    assert not mounted(point) and not mounted(point / "sub")


def test_propagation_is_set_in_a_second_call(tmp_path: Path) -> None:
    with temporary_mount([Mount("tmpfs", "tmpfs", options=("shared",))], root=tmp_path) as root:
        assert " shared:" in mounted(root)[0]
    with temporary_mount([Mount("tmpfs", "tmpfs", options=("private",))], root=tmp_path) as root:
        assert " shared:" not in mounted(root)[0]


def test_overlay_of_several_lowerdirs(tmp_path: Path) -> None:
    l1 = make_tree(tmp_path / "l1", {"a": b"l1", "b": b"l1", "d/x": b"l1"})
    l2 = make_tree(tmp_path / "l2", {"b": b"l2", "d/y": b"l2"})
    l3 = make_tree(tmp_path / "l3", {"c": b"l3"})
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    m = Mount("overlay", "overlay", options=(
        f"lowerdir={l3}:{l2}:{l1}", f"upperdir={upper}", f"workdir={work}"))
    with temporary_mount([m], root=tmp_path) as root:
        view = {p: Path(root, p).read_bytes() for p in ("a", "b", "c", "d/x", "d/y")}
        assert view == {"a": b"l1", "b": b"l2", "c": b"l3", "d/x": b"l1", "d/y": b"l2"}
        Path(root, "a").unlink()
        Path(root, "e").write_bytes(b"up")
    assert (upper / "e").read_bytes() == b"up"
    assert stat.S_ISCHR(os.lstat(upper / "a").st_mode)  # a whiteout
    with temporary_mount([m], root=tmp_path, readonly=True) as root:
        assert sorted(os.listdir(root)) == ["b", "c", "d", "e"]


def _long_layers(base: Path, count: int, name_length: int) -> list[str]:
    layers = []
    for i in range(count):
        layer = base / f"{i:04d}-{'n' * name_length}"
        make_tree(layer, {f"f{i}": str(i).encode(), "shared": str(i).encode()})
        layers.append(str(layer))
    return layers[::-1]  # nearest first


def test_overlay_lowerdir_longer_than_a_page(tmp_path: Path) -> None:
    base = tmp_path / ("p" * 200) / ("q" * 200)
    lowers = _long_layers(base, 120, 150)
    option = "lowerdir=" + ":".join(lowers)
    assert len(option) > 4096 * 8
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    m = Mount("overlay", "overlay", options=(option, f"upperdir={upper}", f"workdir={work}"))
    with temporary_mount([m], root=tmp_path) as root:
        assert len(os.listdir(root)) == 121
        assert Path(root, "shared").read_bytes() == b"119"
        Path(root, "f0").write_bytes(b"changed")
    assert (upper / "f0").read_bytes() == b"changed"
    with temporary_mount([m], root=tmp_path, readonly=True) as root:
        assert Path(root, "f0").read_bytes() == b"changed"


def test_compacted_lowerdirs_leave_the_working_directory_alone(tmp_path: Path) -> None:
    # The fallback for kernels without "lowerdir+": paths relative to their common parent.
    base = tmp_path / ("p" * 250) / ("q" * 250)
    lowers = _long_layers(base, 110, 10)
    option = "lowerdir=" + ":".join(lowers)
    assert len(option) > 4096 * 6
    cwd = os.getcwd()
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append(os.getcwd())

    watcher = threading.Thread(target=watch)
    watcher.start()
    point = tmp_path / "point"
    point.mkdir()
    try:
        mount_compacted("overlay", str(point), 0, [option])
    finally:
        stop.set()
        watcher.join()
    try:
        assert Path(point, "shared").read_bytes() == b"109"
    finally:
        unmount_all(point)
    assert os.getcwd() == cwd and set(seen) == {cwd}


def test_compacting_cannot_shorten_everything(tmp_path: Path) -> None:
    lowers = [str(tmp_path / f"{i}-{'z' * 200}") for i in range(40)]
    point = tmp_path / "point"
    point.mkdir()
    with pytest.raises(OSError, match="longer than a page"):
        mount_compacted("overlay", str(point), 0, ["lowerdir=" + ":".join(lowers)])


def _loop_devices_of(image: Path) -> list[str]:
    out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True,
                         check=True).stdout
    return [line.split(":")[0] for line in out.splitlines()]


@pytest.fixture
def ext4_image(tmp_path: Path) -> Path:
    if shutil.which("mkfs.ext4") is None:
        pytest.skip("mkfs.ext4 is not installed (e2fsprogs)")
    image = tmp_path / "fs.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    return image


def test_ext4_image_through_loop(tmp_path: Path, ext4_image: Path) -> None:
    with temporary_mount([Mount("ext4", str(ext4_image), options=("loop",))],
                         root=tmp_path) as root:
        [device] = _loop_devices_of(ext4_image)
        assert mounted(root)[0].split(" - ")[1].split()[1] == device
        Path(root, "kept").write_bytes(b"on ext4")
    assert _loop_devices_of(ext4_image) == []  # autoclear released it with the mount
    with temporary_mount([Mount("ext4", str(ext4_image), options=("loop", "ro"))],
                         root=tmp_path) as root:
        assert Path(root, "kept").read_bytes() == b"on ext4"
        [device] = _loop_devices_of(ext4_image)
        assert Path(f"/sys/block/{os.path.basename(device)}/ro").read_text().strip() == "1"
        with pytest.raises(OSError, match="Read-only"):
            Path(root, "new").write_bytes(b"")
    assert _loop_devices_of(ext4_image) == []


def test_failed_loop_mount_releases_the_device(tmp_path: Path) -> None:
    image = tmp_path / "zeros.img"
    with open(image, "wb") as f:
        f.truncate(1 << 20)
    with pytest.raises(InvalidArgumentError), temporary_mount(
        [Mount("ext4", str(image), options=("loop",))], root=tmp_path
    ):
        pass
    assert _loop_devices_of(image) == []
    assert os.listdir(tmp_path) == ["zeros.img"]


def test_failure_midway_unmounts_and_keeps_data(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", {"precious": b"keep me", "d/deep": b"me too"})
    mounts = [
        Mount("bind", str(data), options=("rbind",)),
        Mount("bind", str(tmp_path / "missing"), target="d", options=("bind",)),
    ]
    with pytest.raises(NotFoundError, match="missing"), temporary_mount(mounts, root=tmp_path):
        pytest.fail("the block must not run")
    assert sorted(os.listdir(tmp_path)) == ["data"]  # the mount point is gone
    assert (data / "precious").read_bytes() == b"keep me"
    assert (data / "d" / "deep").read_bytes() == b"me too"
    assert "layerdiff-mount-" not in Path("/proc/self/mountinfo").read_text()


def test_error_in_the_block_still_unmounts(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", {"precious": b"keep me"})
    with pytest.raises(ZeroDivisionError), temporary_mount(
        [Mount("bind", str(data), options=("rbind",))], root=tmp_path
    ) as root:
        point = root
        1 / 0  # noqa: B018
    assert not os.path.exists(point) and (data / "precious").read_bytes() == b"keep me"


def test_failed_unmount_is_reported_and_deletes_nothing(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", {"precious": b"keep me"})
    with pytest.raises(TargetError, match="cannot unmount"), temporary_mount(
        [Mount("bind", str(data), options=("rbind",))], root=tmp_path
    ) as root:
        point = root
        busy = open(Path(root, "precious"), "rb")  # noqa: SIM115 - held open on purpose
    try:
        assert mounted(point)  # left mounted, and so not removed
        assert (data / "precious").read_bytes() == b"keep me"
    finally:
        busy.close()
        unmount_all(point)
        os.rmdir(point)


def test_unmount_all_unstacks(tmp_path: Path) -> None:
    point = tmp_path / "point"
    point.mkdir()
    for i in range(3):
        Mount("tmpfs", f"layer{i}").mount(str(point))
    assert len(mounted(point)) == 3
    unmount_all(point)
    assert mounted(point) == []
    unmount_all(point)  # nothing mounted: nothing to do
    unmount_all(tmp_path / "does-not-exist")


def test_unknown_type_and_bad_option(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="unknown file system type"), temporary_mount(
        [Mount("nosuchfs", "x")], root=tmp_path
    ):
        pass
    with pytest.raises(InvalidArgumentError), temporary_mount(
        [Mount("tmpfs", "tmpfs", options=("size=banana",))], root=tmp_path
    ):
        pass
    assert os.listdir(tmp_path) == []


def test_fuse_types_go_through_their_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in mount.fuse3 that records its arguments and bind-mounts the source.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "args"
    helper = bindir / "mount.fuse3"
    helper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {log}\nexec mount --bind "$1" "$2"\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    src = make_tree(tmp_path / "src", {"f": b"fuse"})
    m = Mount("fuse3.fake-fs", str(src), options=("allow_other", "ro"))
    with temporary_mount([m], root=tmp_path / "bin") as root:
        assert Path(root, "f").read_bytes() == b"fuse"
        assert log.read_text().split("\n")[:-1] == [
            str(src), root, "-o", "allow_other", "-o", "ro", "-t", "fake-fs"]
    assert not mounted(root)


def test_missing_fuse_helper_is_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UnsupportedError, match=r"mount\.fuse"), temporary_mount(
        [Mount("fuse.nothing", "x")], root=tmp_path
    ):
        pass
    assert os.listdir(tmp_path) == []


def test_a_target_symlink_stays_inside_the_root(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"f": b"bound"})
    point = tmp_path / "point"
    point.mkdir()
    mounts = [Mount("tmpfs", "tmpfs"), Mount("bind", str(src), target="esc", options=("bind",))]
    mount_all(mounts[:1], point)
    try:
        (point / "sub").mkdir()
        (point / "esc").symlink_to("/../../sub")
        mounts[1].mount(str(point))
        assert (point / "sub" / "f").read_bytes() == b"bound"
    finally:
        unmount_mounts(mounts, point)
    assert not mounted(point / "sub") and not mounted(point)


def test_concurrent_loop_mounts_get_their_own_devices(tmp_path: Path, ext4_image: Path) -> None:
    # Threads asking for a free loop device at once are handed the same one; the losers
    # must ask again, not fail or share it.
    images = []
    for i in range(6):
        image = tmp_path / f"fs{i}.img"
        shutil.copyfile(ext4_image, image)
        images.append(image)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with temporary_mount([Mount("ext4", str(images[i]), options=("loop",))],
                                 root=tmp_path) as root:
                Path(root, "who").write_text(str(i))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for i, image in enumerate(images):
        assert _loop_devices_of(image) == []
        with temporary_mount([Mount("ext4", str(image), options=("loop", "ro"))],
                             root=tmp_path) as root:
            assert Path(root, "who").read_text() == str(i)
