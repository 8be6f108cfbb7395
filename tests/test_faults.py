"""Faults: a full file system, a target made read-only midway, a server SIGKILLed during
Apply and Diff, a client gone mid-call, a stream processor that hangs.

Each fault is produced for real (small tmpfs and loop-mounted ext4 file systems, mount(8)
remounts, SIGKILL) and each outcome is checked from outside: the error the caller gets,
the file systems, the content store, /proc/self/mountinfo and the server's /proc entry.
Calls are held mid-way by a stream processor that stops after some bytes until the test
removes a file, or (Diff, which has no processor) by a large sparse upper tree whose
ingest is watched until it holds bytes: seconds of work remain then.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from layerdiff import apply_layer
from layerdiff.api import descriptor_pb2, diff_pb2, mount_pb2
from layerdiff.compression import Compression
from layerdiff.diff import DiffOptions
from layerdiff.differ.compare import compare_mounts
from layerdiff.errors import TargetError
from layerdiff.mount import Mount
from layerdiff.mount.temp import cleanup_temp_mounts
from layerdiff.oci import MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP
from tests.support.faults import (
    GATED,
    HANG_LIMIT,
    HANGING,
    WAIT,
    FaultServer,
    ext4_image,
    loop_devices,
    small_ext4,
    small_tmpfs,
    start_client,
    start_fault_server,
    wait_until,
)
from tests.support.layers import layer
from tests.support.serve import bind, mounted_under, put
from tests.support.tree import diff_trees, snapshot_tree

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("faults need mounts and SIGKILL of a root server: needs root",
                allow_module_level=True)

#: The gate processor of the shared server holds its call after this many bytes.
HOLD_AFTER = 1 << 20
#: Whole-second entry times (no PAX headers).
MTIME = 1_600_000_000
#: The sparse file of the Diff trees: ~1.5 s of gzip here, 1 MiB of output.
SPARSE = 512 << 20


def big_layer(size: int) -> bytes:
    return layer(("file", "small", {"data": b"ok"}), ("dir", "d/"),
                 ("file", "d/big", {"data": os.urandom(size)}), ("file", "last", {"data": b"z"}))


def diff_id(tar: bytes) -> str:
    return "sha256:" + hashlib.sha256(tar).hexdigest()


def apply_request(
    desc: descriptor_pb2.Descriptor, *mounts: mount_pb2.Mount
) -> diff_pb2.ApplyRequest:
    return diff_pb2.ApplyRequest(diff=desc, mounts=list(mounts))


def call_error(s: FaultServer, method: str, request: object) -> grpc.Call:
    with s.server.diff() as client, pytest.raises(grpc.RpcError) as caught:
        getattr(client, method)(request, timeout=WAIT)
    assert isinstance(caught.value, grpc.Call)
    return caught.value


def one_line(err: grpc.Call) -> str:
    details = err.details() or ""
    assert "\n" not in details and "Traceback" not in details
    return details


def assert_serves(s: FaultServer, tmp_path: Path) -> None:
    """The server answers the next call."""
    target = Path(tempfile.mkdtemp(prefix="next-", dir=tmp_path))
    tar = layer(("file", "next", {"data": b"next"}))
    with s.server.diff() as client:
        reply = client.Apply(apply_request(put(s.store, tar, MEDIA_TYPE_LAYER),
                                           bind(target, "rw")), timeout=WAIT)
    assert reply.applied.digest == diff_id(tar)
    assert (target / "next").read_bytes() == b"next"


def failed(s: FaultServer, method: str) -> list[dict[str, object]]:
    return [r for r in s.server.records() if r.get("msg", "").startswith(f"{method} failed")]


def blobs(s: FaultServer) -> set[str]:
    return {info.digest for info in s.store.walk()}


def sparse_trees(tmp_path: Path) -> tuple[Path, Path]:
    """(lower, upper): upper adds a large sparse file, read as zeros, to an empty lower."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    (upper / "etc").mkdir()
    (upper / "etc" / "conf").write_bytes(b"conf")
    with open(upper / "zeros", "wb") as zeros:
        zeros.truncate(SPARSE)
    return lower, upper


def sparse_diff(lower: Path, upper: Path, ref: str = "") -> diff_pb2.DiffRequest:
    return diff_pb2.DiffRequest(left=[bind(lower, "ro")], right=[bind(upper, "ro")],
                                media_type=MEDIA_TYPE_LAYER_GZIP, ref=ref)


def clean_diff_digest(lower: Path, upper: Path, temp_root: Path) -> str:
    """The blob digest an uninterrupted Diff of the two trees gives (library call)."""
    out = io.BytesIO()
    compare_mounts([Mount("bind", str(lower), options=("rbind", "ro"))],
                   [Mount("bind", str(upper), options=("rbind", "ro"))], out,
                   DiffOptions(compression=Compression.GZIP), temp_root=str(temp_root))
    return "sha256:" + hashlib.sha256(out.getvalue()).hexdigest()


def ingest_has_bytes(s: FaultServer) -> bool:
    return any(status.offset > 0 for status in s.store.list_statuses())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultServer]:
    s = start_fault_server(tmp_path_factory.mktemp("faults"), hold_after=HOLD_AFTER)
    yield s
    s.close()


@pytest.fixture
def own() -> Iterator[list[FaultServer]]:
    """Servers a test starts itself, stopped after it."""
    started: list[FaultServer] = []
    yield started
    for s in started:
        s.close()


# ------------------------------------------------------------------------------ ENOSPC


@pytest.mark.parametrize("fs", ["tmpfs", "ext4"])
def test_no_space_on_the_target_is_a_clear_error_and_nothing_outside_is_written(
    tmp_path: Path, fs: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel").write_bytes(b"untouched")
    before = snapshot_tree(tmp_path / "outside")
    small = (small_tmpfs(tmp_path / "fs", "1m") if fs == "tmpfs"
             else small_ext4(tmp_path / "image", tmp_path / "fs", "4m"))
    with small as target, pytest.raises(TargetError) as caught:
        apply_layer(io.BytesIO(big_layer(8 << 20)), target)
    message = str(caught.value)
    assert message == "tar entry 'd/big': No space left on device"
    assert diff_trees(before, snapshot_tree(outside)) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["outside", "fs"] + (["image"] if fs == "ext4" else []))


def test_no_space_on_served_targets(served: FaultServer, tmp_path: Path) -> None:
    desc = put(served.store, big_layer(8 << 20), MEDIA_TYPE_LAYER)
    image = tmp_path / "image"
    with small_tmpfs(tmp_path / "bound", "1m") as bound:
        targets = {
            # A bind mount of a small file system the caller mounted.
            "bind": bind(bound, "rw"),
            # The server mounts these itself, for the call alone.
            "tmpfs": mount_pb2.Mount(type="tmpfs", source="tmpfs", options=["size=1m"]),
            "ext4 on a loop device": mount_pb2.Mount(
                type="ext4", source=str(ext4_image(image, "4m")), options=["loop"]),
        }
        for name, target in targets.items():
            err = call_error(served, "Apply", apply_request(desc, target))
            assert err.code() is grpc.StatusCode.UNKNOWN, name
            assert one_line(err) == "tar entry 'd/big': No space left on device", name
            assert served.leftovers() == [], name
        assert sorted(p.name for p in bound.iterdir()) == ["d", "small"]
    wait_until(lambda: loop_devices(image) == [], "the loop device to be detached")
    assert served.server.children() == set()
    assert_serves(served, tmp_path)


def test_no_space_in_the_content_store_fails_the_diff_without_a_blob(
    own: list[FaultServer], tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "fs", "4m") as fs:
        s = start_fault_server(tmp_path / "srv", store=fs / "store")
        own.append(s)
        lower, upper = tmp_path / "lower", tmp_path / "upper"
        lower.mkdir()
        upper.mkdir()
        (upper / "random").write_bytes(os.urandom(3 << 20))
        filler = fs / "filler"
        filler.write_bytes(b"\0" * (2 << 20))  # the store's file system is nearly full
        request = diff_pb2.DiffRequest(left=[bind(lower, "ro")], right=[bind(upper, "ro")],
                                       media_type=MEDIA_TYPE_LAYER)
        err = call_error(s, "Diff", request)
        assert err.code() is grpc.StatusCode.UNKNOWN
        details = one_line(err)
        assert details.startswith("cannot write ingest 'layerdiff-diff-")
        assert details.endswith("': No space left on device")
        assert blobs(s) == set() and s.store.list_statuses() == []  # aborted
        assert s.leftovers() == []
        filler.unlink()  # space is freed: the same call now succeeds
        with s.server.diff() as client:
            desc = client.Diff(request, timeout=WAIT).diff
        assert blobs(s) == {desc.digest} and s.store.list_statuses() == []
        s.close()
        own.remove(s)


# ------------------------------------------------------------------- read-only midway


def boundary_layer() -> bytes:
    """A layer whose entry ``d/big`` starts exactly at ``HOLD_AFTER``."""
    # Whole-second times: no PAX headers, so four 512-byte blocks come before first's data.
    first = HOLD_AFTER - 4 * 512
    t = {"mtime": MTIME}
    tar = layer(("file", "small", {"data": b"ok", **t}), ("dir", "d/", t),
                ("file", "d/first", {"data": os.urandom(first), **t}),
                ("file", "d/big", {"data": os.urandom(4 << 20), **t}), ("file", "last", t))
    assert tar[HOLD_AFTER:HOLD_AFTER + 6] == b"d/big\0"
    return tar


def applied_up_to_the_hold(target: Path) -> bool:
    """Whether ``d/first``, the last entry before ``HOLD_AFTER``, is complete in
    ``target`` (its time is set last, before the file is closed)."""
    first = target / "d" / "first"
    return first.exists() and first.stat().st_mtime == MTIME


def remount_read_only(path: Path, *options: str) -> None:
    """Once the entries before ``HOLD_AFTER`` are applied, remount ``path`` read-only;
    the kernel refuses (EBUSY) while a file on it is open for writing, so the remount
    is tried until the last one is closed."""
    wait_until(lambda: applied_up_to_the_hold(path), "d/first to be applied")
    remount = ["mount", "-o", ",".join(("remount", *options, "ro")), str(path)]
    wait_until(lambda: subprocess.run(remount, check=False,
                                      capture_output=True).returncode == 0,
               f"{path} to be remounted read-only")


class RemountingSource(io.RawIOBase):
    """A layer whose reader, at ``HOLD_AFTER``, remounts ``target`` read-only (a bind
    mount alone) before it passes on another byte."""

    def __init__(self, data: bytes, target: Path) -> None:
        self._data = io.BytesIO(data)
        self._target = target
        self.remounted = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        position = self._data.tell()
        if position == HOLD_AFTER and not self.remounted:
            # The applier finishes what it was given and waits for the next header.
            # (Its reads go ahead of it: this runs on the pipeline's producer thread.)
            remount_read_only(self._target, "bind")
            self.remounted = True
        if position < HOLD_AFTER:
            buffer = memoryview(buffer)[:HOLD_AFTER - position]
        return self._data.readinto(buffer)


@pytest.fixture
def bound_target(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(source, target): ``target`` a bind mount of the directory ``source``."""
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
    try:
        yield source, target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_target_made_read_only_midway_is_a_clear_error(
    tmp_path: Path, bound_target: tuple[Path, Path]
) -> None:
    source, target = bound_target
    reader = RemountingSource(boundary_layer(), target)
    (tmp_path / "sentinel").write_bytes(b"untouched")
    with pytest.raises(TargetError) as caught:
        apply_layer(reader, target)  # unbuffered: a short read is passed on as it is
    assert reader.remounted
    assert str(caught.value).startswith("tar entry 'd/big': Read-only file system")
    # What came before is there; nothing outside the target was touched.
    assert sorted(os.listdir(source)) == ["d", "small"]
    assert sorted(os.listdir(source / "d")) == ["first"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentinel", "source", "target"]
    assert (tmp_path / "sentinel").read_bytes() == b"untouched"


def test_a_served_target_made_read_only_midway(served: FaultServer, tmp_path: Path) -> None:
    # The file system itself goes read-only (as ext4's errors=remount-ro does): every
    # mount of it, the server's own bind mount included, refuses writes from then on.
    desc = put(served.store, boundary_layer(), GATED)
    served.events.unlink(missing_ok=True)
    served.hold.touch()
    with small_tmpfs(tmp_path / "fs", "16m") as fs, served.server.diff() as client:
        call = client.Apply.future(apply_request(desc, bind(fs, "rw")), timeout=WAIT)
        wait_until(lambda: len(served.recorded("holding")) == 1, "the call to be held")
        remount_read_only(fs)
        served.hold.unlink()
        with pytest.raises(grpc.RpcError) as caught:
            call.result(WAIT)
        assert sorted(os.listdir(fs)) == ["d", "small"]
        subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
    err = caught.value
    assert isinstance(err, grpc.Call) and err.code() is grpc.StatusCode.UNKNOWN
    assert one_line(err).startswith("tar entry 'd/big': Read-only file system")
    assert served.leftovers() == []
    wait_until(lambda: served.server.children() == set(), "the processor to be reaped")
    assert_serves(served, tmp_path)


# ----------------------------------------------------------------- SIGKILL of the server


def test_a_server_killed_during_apply_recovers_on_restart(
    own: list[FaultServer], tmp_path: Path
) -> None:
    s = start_fault_server(tmp_path / "srv", hold_after=HOLD_AFTER)
    own.append(s)
    tar = boundary_layer()
    desc = put(s.store, tar, GATED)
    committed = blobs(s)
    target = tmp_path / "target"
    target.mkdir()
    s.hold.touch()
    with s.server.diff() as client:
        call = client.Apply.future(apply_request(desc, bind(target, "rw")), timeout=WAIT)
        wait_until(lambda: len(s.recorded("holding")) == 1, "the call to be held")
        wait_until(lambda: applied_up_to_the_hold(target), "d/first to be applied")
        left = mounted_under(s.mounts)
        assert len(left) == 1  # the bind mount of the target, mid-way
        [processor] = s.recorded("holding")
        s.kill(processor)  # in a session of its own: a crash would leave it orphaned
        with pytest.raises(grpc.RpcError):
            call.result(WAIT)
    # What the crash leaves: the mount, and a partly written target.
    assert mounted_under(s.mounts) == left
    assert sorted(os.listdir(target)) == ["d", "small"]
    assert os.listdir(target / "d") == ["first"]
    s.hold.unlink()
    s.server.start()
    record = s.server.wait_for_record(
        lambda r: r.get("msg", "").startswith("unmounted the leftover temporary mount"))
    assert left[0] in str(record["msg"])
    assert s.leftovers() == []
    assert blobs(s) == committed and s.store.list_statuses() == []
    # The retry applies the whole layer over what the killed call left.
    with s.server.diff() as client:
        reply = client.Apply(apply_request(desc, bind(target, "rw")), timeout=WAIT)
    assert reply.applied.digest == diff_id(tar)
    clean = tmp_path / "clean"
    clean.mkdir()
    apply_layer(io.BytesIO(tar), clean)
    assert diff_trees(snapshot_tree(clean), snapshot_tree(target), ignore_atime=True,
                      ignore_dir_mtimes=True) == []
    assert s.leftovers() == []


def test_a_server_killed_during_diff_recovers_on_restart(
    own: list[FaultServer], tmp_path: Path
) -> None:
    s = start_fault_server(tmp_path / "srv")
    own.append(s)
    lower, upper = sparse_trees(tmp_path)
    ref = "caller-ref-1"  # containerd names its diffs' ingests; the retry uses the same
    with s.server.diff() as client:
        call = client.Diff.future(sparse_diff(lower, upper, ref), timeout=WAIT)
        wait_until(lambda: ingest_has_bytes(s), "the layer to be half written")
        left = mounted_under(s.mounts)
        assert len(left) == 2  # lower and upper, mounted read-only
        s.kill()
        with pytest.raises(grpc.RpcError):
            call.result(WAIT)
    assert mounted_under(s.mounts) == left
    # The half-written layer is an ingest, never a blob. The ingest stays (as
    # containerd's): its lock died with the server, so the retry takes it over.
    assert blobs(s) == set()
    [status] = s.store.list_statuses()
    assert status.ref == ref and status.offset > 0
    s.server.start()
    wait_until(lambda: s.leftovers() == [], "the leftover mounts to be cleaned up")
    with s.server.diff() as client:
        desc = client.Diff(sparse_diff(lower, upper, ref), timeout=WAIT).diff
    assert desc.digest == clean_diff_digest(lower, upper, tmp_path)
    assert blobs(s) == {desc.digest} and s.store.list_statuses() == []
    assert s.leftovers() == []


# ----------------------------------------------------------- a client gone mid-call


def wait_for_idle(s: FaultServer, threads: int) -> None:
    """No temp mount, no processor, no ingest, and no more threads than when idle."""
    wait_until(lambda: s.server.children() == set(), "the processor to be reaped")
    wait_until(lambda: s.threads() <= threads, "the server's threads to end")
    assert s.leftovers() == []
    assert s.store.list_statuses() == []


def idle_threads(s: FaultServer, tmp_path: Path) -> int:
    """The server's thread count after a call of each kind, once they are done."""
    assert_serves(s, tmp_path)
    lower, upper = tmp_path / "idle-lower", tmp_path / "idle-upper"
    lower.mkdir()
    upper.mkdir()
    with s.server.diff() as client:
        client.Diff(diff_pb2.DiffRequest(left=[bind(lower, "ro")], right=[bind(upper, "ro")]),
                    timeout=WAIT)
    return s.threads()


def test_a_client_killed_during_apply_stops_the_work(served: FaultServer, tmp_path: Path) -> None:
    idle = idle_threads(served, tmp_path)
    target = tmp_path / "target"
    target.mkdir()
    desc = put(served.store, big_layer(4 << 20), GATED)
    served.events.unlink(missing_ok=True)
    records = len(failed(served, "Apply"))
    served.hold.touch()
    client = start_client(tmp_path, served.server.socket, "Apply",
                          apply_request(desc, bind(target, "rw")).SerializeToString())
    try:
        wait_until(lambda: len(served.recorded("holding")) == 1, "the call to be held")
        assert len(mounted_under(served.mounts)) == 1
        [processor] = served.recorded("holding")
        client.kill()
        client.wait(WAIT)
        # The server notices the client is gone: the processor is stopped where it
        # holds (it never passes the rest of the layer on), and the mount goes.
        wait_until(lambda: len(failed(served, "Apply")) == records + 1, "the call to fail")
        assert failed(served, "Apply")[-1]["code"] == "CANCELLED"
        wait_for_idle(served, idle)
        assert not Path(f"/proc/{processor}").exists()
        assert served.recorded("end") == []
    finally:
        served.hold.unlink(missing_ok=True)
        client.kill()
    assert_serves(served, tmp_path)


@pytest.mark.parametrize("how", ["client killed", "call cancelled"])
def test_a_diff_abandoned_mid_way_aborts_its_ingest(
    served: FaultServer, tmp_path: Path, how: str
) -> None:
    idle = idle_threads(served, tmp_path)
    before = blobs(served)
    lower, upper = sparse_trees(tmp_path)
    request = sparse_diff(lower, upper)
    records = len(failed(served, "Diff"))
    if how == "client killed":
        client = start_client(tmp_path, served.server.socket, "Diff",
                              request.SerializeToString())
        try:
            wait_until(lambda: ingest_has_bytes(served), "the layer to be half written")
            assert len(mounted_under(served.mounts)) == 2
            client.kill()
            client.wait(WAIT)
        finally:
            client.kill()
    else:
        with served.server.diff() as stub:
            call = stub.Diff.future(request, timeout=WAIT)
            wait_until(lambda: ingest_has_bytes(served), "the layer to be half written")
            assert len(mounted_under(served.mounts)) == 2
            call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc's stubs
            with pytest.raises(grpc.FutureCancelledError):
                call.result(WAIT)
    wait_until(lambda: len(failed(served, "Diff")) == records + 1, "the call to fail")
    assert failed(served, "Diff")[-1]["code"] == "CANCELLED"
    wait_for_idle(served, idle)  # the ingest is aborted, not left to grow
    assert blobs(served) == before
    assert_serves(served, tmp_path)


# ---------------------------------------------------------------- a hanging processor


def test_a_hanging_processor_is_killed_at_its_limit(served: FaultServer, tmp_path: Path) -> None:
    # The library's side (every hang, the process group killed) is in test_processors.py;
    # here, through the server: the call's answer, and nothing left behind.
    target = tmp_path / "target"
    target.mkdir()
    desc = put(served.store, big_layer(4 << 20), HANGING)
    served.events.unlink(missing_ok=True)
    served.hold.touch()
    try:
        err = call_error(served, "Apply", apply_request(desc, bind(target, "rw")))
    finally:
        served.hold.unlink()
    assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert one_line(err).endswith(f"stream processor 'hanging' ran past its time limit of "
                                  f"{HANG_LIMIT}s and was killed")
    [processor] = served.recorded("holding")
    wait_until(lambda: served.server.children() == set(), "the processor to be reaped")
    assert not Path(f"/proc/{processor}").exists()
    assert served.leftovers() == []
    assert_serves(served, tmp_path)


# ------------------------------------------------------------ cleanup_temp_mounts


def test_cleanup_takes_only_temporary_mount_points_deepest_first(tmp_path: Path) -> None:
    root, data = tmp_path / "mounts", tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "file").write_bytes(b"kept")
    nested = root / "layerdiff-mount-a"
    nested.mkdir(parents=True)
    empty, other, full = (root / "layerdiff-mount-empty", root / "other",
                          root / "layerdiff-mount-full")
    for d in (empty, other, full):
        d.mkdir()
    (full / "file").write_bytes(b"not a mount point's")
    mounts = [(data, nested), (data / "sub", nested / "sub"), (data, other)]
    for source, point in mounts:
        subprocess.run(["mount", "--bind", str(source), str(point)], check=True)
    try:
        done = cleanup_temp_mounts(root)
        assert done == [str(nested / "sub"), str(nested)]
        assert mounted_under(root) == [str(other)]  # not a temporary mount point: kept
    finally:
        for _, point in reversed(mounts):
            subprocess.run(["umount", "-q", str(point)], check=False)
    # The mounted data is untouched; the nested mount point inside it stays.
    assert (data / "sub" / "file").read_bytes() == b"kept"
    assert sorted(p.name for p in root.iterdir()) == ["layerdiff-mount-full", "other"]
    assert cleanup_temp_mounts(tmp_path / "missing") == []
