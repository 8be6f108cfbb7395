"""``layerdiff serve`` on its own: containerd's Diff API on a unix socket, over a local
content store, with real mounts, real stream processors and a real gRPC client.

Most tests share one server; those that need other limits, or stop the server, start
their own. A slow stream processor (a script that passes its input on in paced chunks
and records when it starts and ends) keeps a call in flight long enough to cancel it,
let its deadline pass, queue another call behind it, or stop the server under it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from layerdiff import apply_layer
from layerdiff.api import descriptor_pb2, diff_pb2, diff_pb2_grpc, mount_pb2
from layerdiff.content import LocalStore
from layerdiff.content.ingest import unique_ref
from layerdiff.content.remote import NAMESPACE_HEADER
from layerdiff.oci import (
    LABEL_UNCOMPRESSED,
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
)
from layerdiff.server import DIFF_SERVICE_NAME
from tests.support.layers import gzip, layer, zstd
from tests.support.serve import (
    LayerdiffServer,
    bind,
    free_port,
    mounted_under,
    put,
    start_local_server,
)
from tests.support.tree import diff_trees, merged_view, snapshot_tree

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("layerdiff serve mounts: needs root", allow_module_level=True)

#: The media type only the slow processor accepts; it yields plain tar.
SLOW = "application/vnd.layerdiff.test.slow"
#: Seconds the slow processor waits after passing on each 64 KiB.
PACE = 0.05
#: A layer that takes the slow processor long to pass on (~6 s for 8 MiB).
BIG = 8 << 20
#: Bounds for waits on the server (never reached when things work).
WAIT = 60.0

SLOW_PROCESSOR = """\
import os, sys, time
from google.protobuf import any_pb2

events, pace = sys.argv[1], float(sys.argv[2])
try:
    with os.fdopen(3, "rb") as f:
        label = any_pb2.Any.FromString(f.read()).value.decode()
except OSError:
    label = "-"

def event(what):
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{what} {label} {os.getpid()}\\n".encode())
    os.close(fd)

event("start")
while os.path.exists(f"{events}.hold-{label}"):  # the test holds this call here
    time.sleep(0.01)
while data := sys.stdin.buffer.read(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    time.sleep(pace)
event("end")
"""

LAYERS = [
    layer(("dir", "etc/"), ("file", "etc/a", {"data": b"a"}), ("file", "etc/b", {"data": b"b"}),
          ("dir", "d/"), ("file", "d/x", {"data": b"x"}), ("dir", "usr/"), ("dir", "usr/bin/"),
          ("symlink", "bin", {"linkname": "usr/bin"}), ("fifo", "fifo"),
          ("char", "null", {"devmajor": 1, "devminor": 3})),
    layer(("file", "etc/.wh.a"), ("file", "bin/ls", {"data": b"ls"}),
          ("dir", "d/"), ("file", "d/.wh..wh..opq"), ("file", "d/y", {"data": b"y"}),
          ("hardlink", "etc/c", {"linkname": "etc/b"})),
]


# ---------------------------------------------------------------------------- helpers


@dataclass
class Served:
    """A running server and what it works on."""

    server: LayerdiffServer
    store: LocalStore
    mounts: Path  # [mounts] temp_root
    events: Path  # what the slow processor records
    metrics_port: int


def start_server(work: Path, limits: str = "", *args: str) -> Served:
    """A server over a local store in ``work``, with the slow processor configured."""
    work.mkdir(parents=True, exist_ok=True)
    script = work / "slow_processor.py"
    script.write_text(SLOW_PROCESSOR)
    events = work / "events"
    port = free_port()
    server, store = start_local_server(work, f"""
[server]
metrics_address = "127.0.0.1:{port}"

[limits]
{limits}

[stream_processors.slow]
accepts = ["{SLOW}"]
returns = "{MEDIA_TYPE_LAYER}"
path = "{sys.executable}"
args = ["{script}", "{events}", "{PACE}"]
""", *args)
    return Served(server, store, work / "mounts", events, port)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = start_server(tmp_path_factory.mktemp("serve"))
    yield s
    s.store.close()
    assert s.server.stop() == 0


@pytest.fixture
def own() -> Iterator[list[Served]]:
    """Servers a test starts itself, stopped after it."""
    started: list[Served] = []
    yield started
    for s in started:
        s.store.close()
        s.server.stop()


def label(name: str) -> dict[str, any_pb2.Any]:
    """Payloads that name a call to the slow processor."""
    return {"slow": any_pb2.Any(type_url="layerdiff.test/Label", value=name.encode())}


def big_layer(size: int = BIG) -> bytes:
    return layer(("file", "big", {"data": os.urandom(size)}))


def diff_id(tar: bytes) -> str:
    return "sha256:" + hashlib.sha256(tar).hexdigest()


def events(s: Served) -> list[tuple[str, str]]:
    """(what, label) the slow processor recorded, in order."""
    if not s.events.exists():
        return []
    return [(w, n) for w, n, _ in (line.split() for line in s.events.read_text().splitlines())]


def wait_for_event(s: Served, event: tuple[str, str]) -> None:
    deadline = threading.Event()
    timer = threading.Timer(WAIT, deadline.set)
    timer.start()
    try:
        while event not in events(s):
            assert not deadline.wait(0.02), f"the slow processor never recorded {event}"
    finally:
        timer.cancel()


def assert_cleaned_up(s: Served) -> None:
    """Nothing a call made is left: mounts, mount points, processes, ingests."""
    assert mounted_under(s.mounts) == []
    assert list(s.mounts.iterdir()) == []
    assert s.server.children() == set()
    assert s.store.list_statuses() == []


def failure(s: Served, method: str, digest: str) -> dict[str, object]:
    """The server's log record of the failed call on ``digest``."""
    return s.server.wait_for_record(
        lambda r: r.get("msg", "").startswith(f"{method} failed") and r.get("digest") == digest,
        WAIT,
    )


def naive(target: Path, layers: list[bytes]) -> Path:
    target.mkdir()
    for blob in layers:
        apply_layer(io.BytesIO(blob), target)
    return target


# ------------------------------------------------------------------------------ Apply


def plain(tar: bytes) -> bytes:
    return tar


@pytest.mark.parametrize(("media_type", "compress"), [
    (MEDIA_TYPE_LAYER, plain), (MEDIA_TYPE_LAYER_GZIP, gzip), (MEDIA_TYPE_LAYER_ZSTD, zstd),
], ids=["tar", "gzip", "zstd"])
def test_apply_onto_a_bind_mount_equals_a_direct_apply(
    served: Served, tmp_path: Path, media_type: str, compress: Callable[[bytes], bytes]
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with served.server.diff() as client:
        for tar in LAYERS:
            desc = put(served.store, compress(tar), media_type)
            reply = client.Apply(diff_pb2.ApplyRequest(diff=desc, mounts=[bind(target, "rw")]),
                                 timeout=WAIT)
            assert (reply.applied.media_type, reply.applied.digest, reply.applied.size) == (
                MEDIA_TYPE_LAYER, diff_id(tar), len(tar))
    expected = naive(tmp_path / "naive", LAYERS)
    assert diff_trees(snapshot_tree(expected), snapshot_tree(target), ignore_atime=True,
                      ignore_dir_mtimes=True) == []
    assert_cleaned_up(served)


def test_apply_onto_an_overlay_writes_its_upperdir(served: Served, tmp_path: Path) -> None:
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    for d in (upper, work):
        d.mkdir()
    naive(lower, LAYERS[:1])
    desc = put(served.store, gzip(LAYERS[1]), MEDIA_TYPE_LAYER_GZIP)
    overlay = mount_pb2.Mount(type="overlay", source="overlay", options=[
        f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}"])
    with served.server.diff() as client:
        reply = client.Apply(diff_pb2.ApplyRequest(diff=desc, mounts=[overlay]), timeout=WAIT)
    assert reply.applied.digest == diff_id(LAYERS[1])
    assert os.getxattr(upper / "d", "trusted.overlay.opaque") == b"y"
    expected = naive(tmp_path / "naive", LAYERS)
    with merged_view([lower, upper]) as view:
        assert diff_trees(snapshot_tree(expected), snapshot_tree(view), ignore_atime=True,
                          ignore_dir_mtimes=True) == []
    assert_cleaned_up(served)


def test_apply_onto_a_tmpfs_mount_list(served: Served, tmp_path: Path) -> None:
    # The tmpfs is gone once the call ends: what shows is the answer, and no leftovers.
    desc = put(served.store, zstd(LAYERS[0]), MEDIA_TYPE_LAYER_ZSTD)
    tmpfs = mount_pb2.Mount(type="tmpfs", source="tmpfs", options=["size=4m"])
    with served.server.diff() as client:
        reply = client.Apply(diff_pb2.ApplyRequest(diff=desc, mounts=[tmpfs], sync_fs=True),
                             timeout=WAIT)
    direct = apply_layer(io.BytesIO(LAYERS[0]), naive(tmp_path / "naive", []))
    assert (reply.applied.digest, reply.applied.size) == (direct.digest, direct.size)
    assert_cleaned_up(served)


# ------------------------------------------------------------------------------- Diff


def make_trees(tmp_path: Path) -> tuple[Path, Path]:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    naive(lower, LAYERS[:1])
    subprocess.run(["cp", "-a", "--", str(lower), str(upper)], check=True)
    (upper / "etc" / "a").write_bytes(b"changed")
    (upper / "etc" / "b").unlink()
    (upper / "new").mkdir()
    (upper / "new" / "file").write_bytes(os.urandom(10_000))
    return lower, upper


@pytest.mark.parametrize(("media_type", "magic"), [
    (MEDIA_TYPE_LAYER, b""), (MEDIA_TYPE_LAYER_GZIP, b"\x1f\x8b"),
    (MEDIA_TYPE_LAYER_ZSTD, b"\x28\xb5\x2f\xfd"), ("", b"\x1f\x8b"),
], ids=["tar", "gzip", "zstd", "default"])
def test_diff_commits_the_layer_to_the_store(
    served: Served, tmp_path: Path, media_type: str, magic: bytes
) -> None:
    lower, upper = make_trees(tmp_path)
    request = diff_pb2.DiffRequest(left=[bind(lower, "ro")], right=[bind(upper, "ro")],
                                   media_type=media_type, labels={"test.label": "kept"})
    with served.server.diff() as client:
        reply = client.Diff(request, timeout=WAIT)
    desc = reply.diff
    assert desc.media_type == (media_type or MEDIA_TYPE_LAYER_GZIP)
    info = served.store.info(desc.digest)
    assert info.size == desc.size
    assert info.labels["test.label"] == "kept"
    with served.store.reader(desc.digest) as blob:
        data = blob.read()
    assert data.startswith(magic)
    if media_type == MEDIA_TYPE_LAYER:
        assert info.labels[LABEL_UNCOMPRESSED] == desc.digest
    # The layer turns lower into upper.
    target = tmp_path / "target"
    subprocess.run(["cp", "-a", "--", str(lower), str(target)], check=True)
    applied = apply_layer(io.BytesIO(data), target)
    assert info.labels[LABEL_UNCOMPRESSED] == applied.digest
    assert diff_trees(snapshot_tree(upper), snapshot_tree(target), ignore_atime=True,
                      ignore_dir_mtimes=True) == []
    assert_cleaned_up(served)


def test_diff_writes_through_the_given_ref(served: Served, tmp_path: Path) -> None:
    lower, upper = make_trees(tmp_path)
    ref = unique_ref("caller")
    with served.store.writer(ref) as stale:  # an earlier attempt's bytes, to be dropped
        stale.write(b"left over")
    request = diff_pb2.DiffRequest(left=[bind(lower, "ro")], right=[bind(upper, "ro")],
                                   media_type=MEDIA_TYPE_LAYER, ref=ref)
    with served.server.diff() as client:
        desc = client.Diff(request, timeout=WAIT).diff
    assert [s.ref for s in served.store.list_statuses()] == []  # committed through the ref
    with served.store.reader(desc.digest) as blob:
        data = blob.read()
    assert diff_id(data) == desc.digest and not data.startswith(b"left over")


# ----------------------------------------------------------------------------- errors


def call_error(s: Served, method: str, request: object) -> grpc.RpcError:
    with s.server.diff() as client, pytest.raises(grpc.RpcError) as caught:
        getattr(client, method)(request, timeout=WAIT)
    return caught.value


def error_cases(tmp_path: Path, store: LocalStore) -> dict[str, tuple[str, object, str, str]]:
    """name: (method, request, code, a word of the message)."""
    target = tmp_path / "target"
    target.mkdir()
    tar = LAYERS[0]
    good = put(store, gzip(tar), MEDIA_TYPE_LAYER_GZIP)
    cut = put(store, gzip(tar)[:40], MEDIA_TYPE_LAYER_GZIP)
    missing = descriptor_pb2.Descriptor(media_type=MEDIA_TYPE_LAYER, size=1,
                                        digest="sha256:" + "0" * 64)
    wrong_size = descriptor_pb2.Descriptor(media_type=good.media_type, digest=good.digest,
                                           size=good.size - 1)
    unknown = descriptor_pb2.Descriptor(media_type="application/x-unknown", digest=good.digest,
                                        size=good.size)
    xattr = {"SCHILY.xattr.user.big": "x" * (65 << 10)}  # past the 64 KiB limit
    too_big = put(store, layer(("file", "a", {"pax_headers": xattr})), MEDIA_TYPE_LAYER)

    def apply(desc: descriptor_pb2.Descriptor, *mounts: mount_pb2.Mount) -> object:
        return diff_pb2.ApplyRequest(diff=desc, mounts=list(mounts) or [bind(target, "rw")])

    def diff(media_type: str, left: Path = target) -> object:
        return diff_pb2.DiffRequest(left=[bind(left, "ro")], right=[bind(target, "ro")],
                                    media_type=media_type)

    return {
        "missing blob": ("Apply", apply(missing), "NOT_FOUND", "not found"),
        "size mismatch": ("Apply", apply(wrong_size), "INVALID_ARGUMENT", "bytes"),
        "truncated gzip": ("Apply", apply(cut), "INVALID_ARGUMENT", "gzip"),
        "unknown media type": ("Apply", apply(unknown), "UNIMPLEMENTED", "application/x-unknown"),
        "bad digest": ("Apply", apply(descriptor_pb2.Descriptor(
            media_type=MEDIA_TYPE_LAYER, digest="md5:xyz", size=1)), "INVALID_ARGUMENT", "md5"),
        "NUL in mount option": ("Apply", apply(good, mount_pb2.Mount(
            type="bind", source=str(target), options=["rbind\0"])), "INVALID_ARGUMENT", "NUL"),
        "limit": ("Apply", apply(too_big), "RESOURCE_EXHAUSTED", "user.big"),
        "diff media type": ("Diff", diff("application/x-unknown"), "UNIMPLEMENTED",
                            "application/x-unknown"),
    }


@pytest.mark.parametrize("case", [
    "missing blob", "size mismatch", "truncated gzip", "unknown media type", "bad digest",
    "NUL in mount option", "limit", "diff media type",
])
def test_errors_become_status_codes_with_one_line_messages(
    served: Served, tmp_path: Path, case: str
) -> None:
    method, request, code, word = error_cases(tmp_path, served.store)[case]
    err = call_error(served, method, request)
    assert isinstance(err, grpc.Call)
    assert err.code().name == code, err.details()
    details = err.details() or ""
    assert word.lower() in details.lower()
    assert "\n" not in details and "Traceback" not in details
    assert_cleaned_up(served)


# ---------------------------------------------------------- cancellation and deadlines


def test_a_cancelled_apply_stops_and_cleans_up(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    desc = put(served.store, big_layer(), SLOW)
    with served.server.diff() as client:
        call = client.Apply.future(diff_pb2.ApplyRequest(
            diff=desc, mounts=[bind(target, "rw")], payloads=label("cancelled")))
        wait_for_event(served, ("start", "cancelled"))
        assert mounted_under(served.mounts) != []  # the work is under way, mounted
        assert in_flight(served, "Apply") == 1
        call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc's stubs
        with pytest.raises(grpc.FutureCancelledError):
            call.result(WAIT)
    record = failure(served, "Apply", desc.digest)
    assert record["code"] == "CANCELLED"
    # Stopped at once, not left to notice its input end: it never reached its end.
    assert ("end", "cancelled") not in events(served)
    assert_cleaned_up(served)
    assert in_flight(served, "Apply") == 0
    # The server keeps serving.
    small = put(served.store, LAYERS[0], SLOW)
    with served.server.diff() as client:
        reply = client.Apply(diff_pb2.ApplyRequest(diff=small, mounts=[bind(target, "rw")]),
                             timeout=WAIT)
    assert reply.applied.digest == diff_id(LAYERS[0])


def test_a_client_deadline_stops_the_apply(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    desc = put(served.store, big_layer(), SLOW)
    with served.server.diff() as client, pytest.raises(grpc.RpcError) as caught:
        client.Apply(diff_pb2.ApplyRequest(diff=desc, mounts=[bind(target, "rw")]), timeout=3)
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    # Whichever noticed first, the deadline or the end of the call, stopped the work.
    assert failure(served, "Apply", desc.digest)["code"] in ("DEADLINE_EXCEEDED", "CANCELLED")
    assert_cleaned_up(served)


def test_the_configured_apply_timeout_stops_the_apply(
    own: list[Served], tmp_path: Path
) -> None:
    s = start_server(tmp_path / "srv", "apply_timeout = 1")
    own.append(s)
    target = tmp_path / "target"
    target.mkdir()
    desc = put(s.store, big_layer(), SLOW)
    with s.server.diff() as client, pytest.raises(grpc.RpcError) as caught:
        client.Apply(diff_pb2.ApplyRequest(diff=desc, mounts=[bind(target, "rw")]),
                     timeout=WAIT)
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "deadline" in (caught.value.details() or "")
    assert failure(s, "Apply", desc.digest)["code"] == "DEADLINE_EXCEEDED"
    assert_cleaned_up(s)


# -------------------------------------------------------------------- limits, shutdown


def test_concurrency_one_makes_the_second_call_wait(own: list[Served], tmp_path: Path) -> None:
    s = start_server(tmp_path / "srv", "concurrency = 1")
    own.append(s)
    blob = big_layer(1 << 20)
    desc = put(s.store, blob, SLOW)
    targets = [tmp_path / "first", tmp_path / "second"]
    with s.server.diff() as client, ThreadPoolExecutor(2) as pool:
        def apply(name: str, target: Path) -> str:
            target.mkdir()
            reply = client.Apply(diff_pb2.ApplyRequest(
                diff=desc, mounts=[bind(target, "rw")], payloads=label(name)), timeout=WAIT)
            return reply.applied.digest

        first = pool.submit(apply, "first", targets[0])
        wait_for_event(s, ("start", "first"))
        second = pool.submit(apply, "second", targets[1])
        assert first.result(WAIT) == second.result(WAIT) == diff_id(blob)
    assert events(s) == [("start", "first"), ("end", "first"),
                         ("start", "second"), ("end", "second")]
    assert_cleaned_up(s)


def test_calls_run_in_parallel_up_to_the_limit(served: Served, tmp_path: Path) -> None:
    # Both calls are held in their processor until both have started: with fewer than
    # two slots, the second would never start and the wait would fail.
    blob = LAYERS[0]
    desc = put(served.store, blob, SLOW)
    names = ["left", "right"]
    holds = [Path(f"{served.events}.hold-{name}") for name in names]
    for hold in holds:
        hold.touch()
    try:
        with served.server.diff() as client, ThreadPoolExecutor(2) as pool:
            def apply(name: str) -> str:
                target = tmp_path / name
                target.mkdir()
                reply = client.Apply(diff_pb2.ApplyRequest(
                    diff=desc, mounts=[bind(target, "rw")], payloads=label(name)),
                    timeout=WAIT)
                return reply.applied.digest

            calls = [pool.submit(apply, name) for name in names]
            for name in names:
                wait_for_event(served, ("start", name))
            assert in_flight(served, "Apply") == 2
            for hold in holds:
                hold.unlink()
            assert [c.result(WAIT) for c in calls] == [diff_id(blob)] * 2
    finally:
        for hold in holds:
            hold.unlink(missing_ok=True)
    assert_cleaned_up(served)


def test_sigterm_lets_the_call_in_flight_finish(own: list[Served], tmp_path: Path) -> None:
    s = start_server(tmp_path / "srv", "", "--grace", str(WAIT))
    own.append(s)
    blob = big_layer(1 << 20)
    desc = put(s.store, blob, SLOW)
    target = tmp_path / "target"
    target.mkdir()
    with s.server.channel() as channel, ThreadPoolExecutor(1) as pool:
        health = health_pb2_grpc.HealthStub(channel)
        check = health.Check(health_pb2.HealthCheckRequest(service=DIFF_SERVICE_NAME))
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=DIFF_SERVICE_NAME))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        client = diff_pb2_grpc.DiffStub(channel)
        call = pool.submit(lambda: client.Apply(diff_pb2.ApplyRequest(
            diff=desc, mounts=[bind(target, "rw")], payloads=label("in-flight")), timeout=WAIT))
        wait_for_event(s, ("start", "in-flight"))
        process = s.server.process
        assert process is not None
        process.terminate()
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()
        assert call.result(WAIT).applied.digest == diff_id(blob)
    assert process.wait(WAIT) == 0
    assert not s.server.socket.exists()
    assert (target / "big").stat().st_size == 1 << 20
    assert any(r.get("msg") == "received SIGTERM, shutting down" for r in s.server.records())
    assert mounted_under(s.mounts) == [] and list(s.mounts.iterdir()) == []




def test_sigterm_cancels_what_outlasts_the_grace(own: list[Served], tmp_path: Path) -> None:
    s = start_server(tmp_path / "srv", "", "--grace", "1")
    own.append(s)
    desc = put(s.store, big_layer(), SLOW)
    target = tmp_path / "target"
    target.mkdir()
    with s.server.diff() as client:
        call = client.Apply.future(diff_pb2.ApplyRequest(
            diff=desc, mounts=[bind(target, "rw")], payloads=label("outlasting")), timeout=WAIT)
        wait_for_event(s, ("start", "outlasting"))
        process = s.server.process
        assert process is not None
        process.terminate()
        with pytest.raises(grpc.RpcError) as caught:
            call.result(WAIT)
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    assert process.wait(WAIT) == 0
    assert not s.server.socket.exists()
    assert failure(s, "Apply", desc.digest)["code"] == "CANCELLED"
    assert mounted_under(s.mounts) == [] and list(s.mounts.iterdir()) == []
    assert s.store.list_statuses() == []
    [pid] = [int(line.split()[2]) for line in s.events.read_text().splitlines()
             if line.startswith("start ")]
    assert not Path(f"/proc/{pid}").exists()  # reaped by the server before it exited


# --------------------------------------------------------- health, metrics, logs, socket


def metrics(s: Served) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the metrics endpoint shows, by name and labels."""
    url = f"http://127.0.0.1:{s.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=WAIT) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def in_flight(s: Served, method: str) -> float:
    return metrics(s).get(("layerdiff_calls_in_flight", (("method", method),)), 0.0)


def test_health_says_serving(served: Served) -> None:
    with served.server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", DIFF_SERVICE_NAME):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=WAIT)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_metrics_count_calls_bytes_durations_and_errors(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    blob = gzip(LAYERS[0])
    desc = put(served.store, blob, MEDIA_TYPE_LAYER_GZIP)
    missing = descriptor_pb2.Descriptor(media_type=MEDIA_TYPE_LAYER, size=1,
                                        digest="sha256:" + "1" * 64)
    lower, upper = make_trees(tmp_path)
    before = metrics(served)
    with served.server.diff() as client:
        client.Apply(diff_pb2.ApplyRequest(diff=desc, mounts=[bind(target, "rw")]), timeout=WAIT)
        with pytest.raises(grpc.RpcError):
            client.Apply(diff_pb2.ApplyRequest(diff=missing, mounts=[bind(target, "rw")]),
                         timeout=WAIT)
        layer_desc = client.Diff(diff_pb2.DiffRequest(
            left=[bind(lower, "ro")], right=[bind(upper, "ro")]), timeout=WAIT).diff
    after = metrics(served)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("layerdiff_calls_total", method="Apply", code="OK") == 1
    assert grew("layerdiff_calls_total", method="Apply", code="NOT_FOUND") == 1
    assert grew("layerdiff_calls_total", method="Diff", code="OK") == 1
    assert grew("layerdiff_bytes_total", method="Apply") == len(blob)
    assert grew("layerdiff_bytes_total", method="Diff") == layer_desc.size
    assert grew("layerdiff_call_duration_seconds_count", method="Apply") == 2
    assert grew("layerdiff_call_duration_seconds_count", method="Diff") == 1
    assert grew("layerdiff_call_duration_seconds_sum", method="Diff") > 0
    assert after[("layerdiff_calls_in_flight", (("method", "Apply"),))] == 0


def test_logs_are_json_lines_with_the_calls_fields(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    desc = put(served.store, gzip(big_layer(1000)), MEDIA_TYPE_LAYER_GZIP)  # its own digest
    with served.server.diff() as client:
        client.Apply(diff_pb2.ApplyRequest(diff=desc, mounts=[bind(target, "rw")]),
                     metadata=((NAMESPACE_HEADER, "tenant-a"),), timeout=WAIT)
    record = served.server.wait_for_record(
        lambda r: r.get("msg") == "Apply done" and r.get("digest") == desc.digest)
    assert record["method"] == "Apply" and record["namespace"] == "tenant-a"
    assert record["code"] == "OK" and record["size"] == desc.size
    assert record["level"] == "info" and isinstance(record["duration"], float)
    lines = served.server.log.read_text().splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)


def serve_once(address: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """``layerdiff serve`` expected to exit at once."""
    return subprocess.run(
        [sys.executable, "-m", "layerdiff", "serve", "--address", f"unix://{address}",
         "--config", str(config)],
        check=False, capture_output=True, text=True, timeout=WAIT,
    )


def test_a_stale_socket_is_replaced_and_a_live_one_refused(
    own: list[Served], tmp_path: Path
) -> None:
    work = tmp_path / "srv"
    work.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(work / "layerdiff.sock"))  # bound, never listened on: as after a crash
    stale.close()
    s = start_server(work)
    own.append(s)
    assert s.server.serving()
    second = serve_once(s.server.socket, work / "layerdiff.toml")
    assert second.returncode == 1
    assert second.stderr.splitlines()[-1] == (
        f"layerdiff: error: another server is listening on {s.server.socket}")
    assert "Traceback" not in second.stderr
    assert s.server.serving()  # untouched
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("precious")
    third = serve_once(not_a_socket, work / "layerdiff.toml")
    assert third.returncode == 1 and "is not a socket" in third.stderr
    assert not_a_socket.read_text() == "precious"


def test_a_metrics_address_in_use_stops_the_server_before_it_listens(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = tmp_path / "layerdiff.toml"
        config.write_text(f'[server]\nmetrics_address = "{address}"\n'
                          f'[content]\nroot = "{tmp_path / "store"}"\n')
        result = serve_once(tmp_path / "layerdiff.sock", config)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"layerdiff: error: cannot serve metrics on {address}: Address already in use")
    assert not (tmp_path / "layerdiff.sock").exists()
