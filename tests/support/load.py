"""A bounded load on ``layerdiff serve``: many concurrent Apply and Diff calls, and a
watch on the server process for leaks.

The driver starts a real server over a local store (on a tmpfs of its own), prepares a
few layers and trees, and runs client threads that issue a weighted mix of calls (see
``KINDS``): Apply onto bind mounts of fresh directories, onto a tmpfs and into overlay
upperdirs, through an external stream processor, of a corrupt layer; Diff of bind
mounts, of an overlay upperdir and of a mounted overlay; and calls the client cancels or
whose deadline is short. Every answer is checked (the diffID or blob digest is the one
the library computes in-process; the applied tree, for a sample) and every call's
outcome must be one its kind allows.

A sampler reads the server's ``/proc`` entries every few seconds: RSS, peak RSS, open
fds, threads, child processes, mounts. The run goes: a burst that starts every gRPC
worker thread, a warm-up, an idle baseline, the load, and an idle end compared with the
baseline.

As a command (root)::

    .venv/bin/python -m tests.support.load --minutes 10 --clients 16 --concurrency 4
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families

from layerdiff import ApplyOptions, WhiteoutMode, apply_layer
from layerdiff.api import descriptor_pb2, diff_pb2, diff_pb2_grpc, mount_pb2
from layerdiff.api.convert import mount_from_proto
from layerdiff.compression import Compression
from layerdiff.content.local import LocalStore
from layerdiff.diff import DiffOptions
from layerdiff.differ.compare import compare_mounts
from layerdiff.mount import mount_points
from layerdiff.oci import MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD
from tests.support.layers import gzip, layer, zstd
from tests.support.serve import (
    LayerdiffServer,
    bind,
    children_of,
    free_port,
    put,
    thread_count,
)
from tests.support.tree import MNT_DETACH, Tree, diff_trees, mount, snapshot_tree, unmount

#: Media types only the test's stream processors accept; they yield plain tar.
CAT = "application/vnd.layerdiff.test.cat"
HOLD = "application/vnd.layerdiff.test.hold"
#: ... and this one's never yields a byte: the call ends only when it is cut short.
NEVER = "application/vnd.layerdiff.test.never"
#: Bound on any call that is not meant to be cut short, and on every wait.
WAIT = 120.0
#: Every how many calls of a kind a client compares the applied tree with the reference.
VERIFY_EVERY = 4
#: Size of the random file of the big layer and tree (calls that get cut short).
BIG = 8 << 20

#: glibc keeps freed memory for reuse, and how much depends on which thread freed what:
#: RSS then swings by tens of MiB from one idle moment to the next. A fixed mmap
#: threshold returns large buffers (the 1 MiB chunks) to the kernel when freed, and two
#: arenas keep little behind, so that RSS follows the memory in use.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "2"}

OK = "OK"
#: A call the client cancelled before it ended.
CLIENT_CANCELLED = "CLIENT_CANCELLED"
#: The answer was wrong (a digest or tree other than expected).
MISMATCH = "MISMATCH"
#: The client itself failed (a bug of this driver, or of the machine).
CLIENT_ERROR = "CLIENT_ERROR"


@dataclass(frozen=True)
class Kind:
    """One kind of call: how often it is picked and the outcomes it may have."""

    weight: int
    outcomes: frozenset[str]


KINDS: dict[str, Kind] = {
    "apply-tar": Kind(2, frozenset({OK})),
    "apply-gzip": Kind(2, frozenset({OK})),
    "apply-zstd": Kind(2, frozenset({OK})),
    "apply-whiteouts": Kind(2, frozenset({OK})),
    "apply-overlay": Kind(2, frozenset({OK})),
    "apply-tmpfs": Kind(1, frozenset({OK})),
    "apply-processor": Kind(1, frozenset({OK})),
    "apply-corrupt": Kind(1, frozenset({"INVALID_ARGUMENT"})),
    "apply-cancel": Kind(1, frozenset({CLIENT_CANCELLED})),
    "apply-deadline": Kind(1, frozenset({"DEADLINE_EXCEEDED"})),
    "apply-cancel-midway": Kind(1, frozenset({OK, CLIENT_CANCELLED})),
    "apply-deadline-midway": Kind(1, frozenset({OK, "DEADLINE_EXCEEDED"})),
    "diff-bind": Kind(2, frozenset({OK})),
    "diff-overlay": Kind(2, frozenset({OK})),
    "diff-overlay-mounted": Kind(1, frozenset({OK})),
    "diff-deadline": Kind(1, frozenset({OK, "DEADLINE_EXCEEDED"})),
}


class Mismatch(Exception):
    """A call answered, but not what was expected."""


# ------------------------------------------------------------------------ the process


@dataclass(frozen=True)
class Sample:
    """The server process at one instant."""

    at: float  # seconds since the start of the run
    phase: str
    rss_kib: int
    hwm_kib: int
    fds: int
    threads: int
    children: int
    mounts: int  # lines of the server's mountinfo (other users' mounts included)
    ours: int  # mounts under the run's directory, and entries left in the temp root


def sample_process(pid: int, root: Path, temp_root: Path, at: float, phase: str) -> Sample:
    """Read ``pid``'s state from ``/proc``."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    points = mount_points(pid)
    below = str(root) + "/"
    ours = sum(p.startswith(below) for p in points) + len(os.listdir(temp_root))
    return Sample(
        at=round(at, 1), phase=phase,
        rss_kib=int(status["VmRSS"].split()[0]), hwm_kib=int(status["VmHWM"].split()[0]),
        fds=len(os.listdir(f"/proc/{pid}/fd")), threads=thread_count(pid),
        children=len(children_of(pid)), mounts=len(points), ours=ours,
    )


# --------------------------------------------------------------------------- results


@dataclass
class Stats:
    """Outcomes and latencies of the calls, by kind; thread-safe."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    #: A few unexpected outcomes, with their messages.
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, kind: str, outcome: str, seconds: float, message: str = "") -> None:
        """Count one call."""
        with self.lock:
            self.outcomes[kind, outcome] += 1
            self.latencies[kind].append(seconds)
            if outcome not in KINDS[kind].outcomes and len(self.problems) < 20:
                self.problems.append(f"{kind}: {outcome}: {message}")

    @property
    def calls(self) -> int:
        """Calls done."""
        return sum(self.outcomes.values())

    def unexpected(self) -> int:
        """Calls whose outcome their kind does not allow."""
        return sum(n for (kind, outcome), n in self.outcomes.items()
                   if outcome not in KINDS[kind].outcomes)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``; 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


@dataclass
class Report:
    """What a run did and what the server looked like."""

    clients: int
    concurrency: int
    seconds: float
    stats: Stats
    samples: list[Sample]
    baseline: Sample  # idle, after the warm-up
    end: Sample  # idle, after the load
    ingests: list[str]  # ingests left in the store at the end (refs)

    @property
    def first(self) -> Sample:
        """The first sample taken under load, after the warm-up."""
        return next(s for s in self.samples if s.phase == "load")

    def peak(self, name: str) -> int:
        """The highest value of a sample field during the load."""
        return max(int(getattr(s, name)) for s in self.samples if s.phase == "load")

    def problems(
        self, *, rss_growth_kib: int, fd_allowance: int = 0, thread_allowance: int = 0
    ) -> list[str]:
        """Why the run is a failure; [] if it passed."""
        found = [f"{self.stats.unexpected()} unexpected outcomes: {self.stats.problems}"
                 ] if self.stats.unexpected() else []
        b, e = self.baseline, self.end
        if e.fds > b.fds + fd_allowance:
            found.append(f"open fds grew from {b.fds} to {e.fds}")
        if e.threads > b.threads + thread_allowance:
            found.append(f"threads grew from {b.threads} to {e.threads}")
        if e.children:
            found.append(f"{e.children} child processes left")
        if e.ours:
            found.append(f"{e.ours} mounts or mount points left")
        if self.ingests:
            found.append(f"ingests left in the store: {self.ingests}")
        # Idle against idle: under load, RSS holds whatever the calls in flight hold.
        growth = e.rss_kib - b.rss_kib
        if growth > rss_growth_kib:
            found.append(f"RSS grew by {growth} KiB (bound {rss_growth_kib} KiB)")
        return found

    def table(self) -> str:
        """A plain-text summary: calls by kind and outcome, latencies, the samples."""
        stats = self.stats
        lines = [f"{stats.calls} calls in {self.seconds:.0f} s "
                 f"({stats.calls / self.seconds:.1f}/s), {self.clients} clients, "
                 f"concurrency {self.concurrency}", "",
                 f"{'kind':<22}{'calls':>7}{'p50 ms':>9}{'p99 ms':>9}  outcomes"]
        for kind in KINDS:
            times = stats.latencies.get(kind, [])
            outcomes = ", ".join(f"{o} {n}" for (k, o), n in sorted(stats.outcomes.items())
                                 if k == kind)
            lines.append(f"{kind:<22}{len(times):>7}{percentile(times, 50) * 1000:>9.0f}"
                         f"{percentile(times, 99) * 1000:>9.0f}  {outcomes}")
        every = [t for times in stats.latencies.values() for t in times]
        lines.append(f"{'all':<22}{len(every):>7}{percentile(every, 50) * 1000:>9.0f}"
                     f"{percentile(every, 99) * 1000:>9.0f}  unexpected {stats.unexpected()}")
        lines += ["", f"{'':<26}{'RSS MiB':>9}{'HWM MiB':>9}{'fds':>6}{'threads':>9}"
                      f"{'children':>10}{'ours':>6}"]
        rows = [("idle after warm-up", self.baseline), ("first under load", self.first),
                ("peak under load", None), ("last under load",
                                            [s for s in self.samples if s.phase == "load"][-1]),
                ("idle at the end", self.end)]
        for name, s in rows:
            if s is None:
                values = [self.peak("rss_kib") / 1024, self.peak("hwm_kib") / 1024,
                          self.peak("fds"), self.peak("threads"), self.peak("children"),
                          self.peak("ours")]
            else:
                values = [s.rss_kib / 1024, s.hwm_kib / 1024, s.fds, s.threads, s.children,
                          s.ours]
            lines.append(f"{name:<26}{values[0]:>9.1f}{values[1]:>9.1f}{values[2]:>6}"
                         f"{values[3]:>9}{values[4]:>10}{values[5]:>6}")
        return "\n".join(lines)


# -------------------------------------------------------------------------- fixtures

BASE = layer(
    ("dir", "etc/"), *(("file", f"etc/f{i}", {"data": os.urandom(200 * i)}) for i in range(12)),
    ("dir", "usr/"), ("dir", "usr/bin/"), ("file", "usr/bin/sh", {"data": b"#!" * 3000}),
    ("symlink", "bin", {"linkname": "usr/bin"}),
    ("hardlink", "etc/link", {"linkname": "etc/f3"}),
    ("dir", "d/"), ("file", "d/x", {"data": b"x"}), ("file", "d/y", {"data": b"y"}),
    ("dir", "keep/"), ("file", "keep/k", {"data": b"k" * 5000, "mode": 0o4755}),
)
WHITEOUTS = layer(
    ("file", "etc/.wh.f1"), ("file", "etc/.wh.f2"), ("file", "bin/ls", {"data": b"ls" * 100}),
    ("dir", "d/"), ("file", "d/.wh..wh..opq"), ("file", "d/z", {"data": b"z"}),
    ("dir", "new/"), ("file", "new/n", {"data": os.urandom(3000)}),
)
BIG_LAYER = layer(("file", "big", {"data": os.urandom(BIG)}), ("file", "after"))


def diff_id(tar: bytes) -> str:
    """The digest of an uncompressed layer."""
    return "sha256:" + hashlib.sha256(tar).hexdigest()


class Fixture:
    """The blobs in the store, the reference trees, and what each call must answer."""

    def __init__(self, root: Path, store: LocalStore, temp_root: Path) -> None:
        self.root = root
        self.blobs = {
            "tar": put(store, BASE, MEDIA_TYPE_LAYER),
            "gzip": put(store, gzip(BASE), MEDIA_TYPE_LAYER_GZIP),
            "zstd": put(store, zstd(BASE), MEDIA_TYPE_LAYER_ZSTD),
            "whiteouts": put(store, gzip(WHITEOUTS), MEDIA_TYPE_LAYER_GZIP),
            "cat": put(store, BASE, CAT),
            "corrupt": put(store, gzip(BASE)[:-100], MEDIA_TYPE_LAYER_GZIP),
            "big-cat": put(store, BIG_LAYER, CAT),
            "big-gzip": put(store, gzip(BIG_LAYER), MEDIA_TYPE_LAYER_GZIP),
            "hold": put(store, BASE, HOLD),
            "never": put(store, BASE, NEVER),
        }
        self.base = root / "ref-base"
        self.base.mkdir()
        apply_layer(io.BytesIO(BASE), self.base)
        # As the clients make theirs: a copy of the base (hardlinks split), then the layer.
        self.whiteouts = root / "ref-whiteouts"
        shutil.copytree(self.base, self.whiteouts, symlinks=True)
        apply_layer(io.BytesIO(WHITEOUTS), self.whiteouts)
        self.upper = root / "ref-upper"  # the whiteouts layer in an overlay upperdir
        self.upper.mkdir()
        apply_layer(io.BytesIO(WHITEOUTS), self.upper, ApplyOptions(
            mode=WhiteoutMode.OVERLAY, parents=(str(self.base),)))
        self.big = root / "ref-big"
        self.big.mkdir()
        apply_layer(io.BytesIO(BIG_LAYER), self.big)
        (root / "ref-work").mkdir()
        self.trees = {name: snapshot_tree(path) for name, path in [
            ("base", self.base), ("whiteouts", self.whiteouts), ("upper", self.upper)]}
        overlay = mount_pb2.Mount(type="overlay", source="overlay", options=[
            f"lowerdir={self.base}", f"upperdir={self.upper}", f"workdir={root / 'ref-work'}"])
        mounted = mount_pb2.Mount(type="overlay", source="overlay", options=[
            f"lowerdir={self.upper}:{self.base}"])
        #: kind: (left, right, media type), and the digest each must give.
        self.diffs = {
            "diff-bind": ([bind(self.base, "ro")], [bind(self.whiteouts, "ro")],
                          MEDIA_TYPE_LAYER_GZIP),
            "diff-overlay": ([bind(self.base, "ro")], [overlay], MEDIA_TYPE_LAYER_ZSTD),
            "diff-overlay-mounted": ([], [mounted], MEDIA_TYPE_LAYER),
            "diff-deadline": ([], [bind(self.big, "ro")], MEDIA_TYPE_LAYER_GZIP),
        }
        compression = {MEDIA_TYPE_LAYER: Compression.NONE, MEDIA_TYPE_LAYER_GZIP:
                       Compression.GZIP, MEDIA_TYPE_LAYER_ZSTD: Compression.ZSTD}
        self.expected_diffs = {
            kind: compare_mounts(
                [mount_from_proto(m) for m in left], [mount_from_proto(m) for m in right],
                io.BytesIO(), DiffOptions(compression=compression[media_type]),
                temp_root=str(temp_root)).digest
            for kind, (left, right, media_type) in self.diffs.items()
        }


#: Whiteout devices in an upperdir: made by the apply, with its time.
WHITEOUT_DEVICES = ("etc/f1", "etc/f2")


def same_tree(expected: Tree, actual: Path) -> None:
    """Raise ``Mismatch`` unless ``actual`` holds the ``expected`` tree."""
    problems = diff_trees(expected, snapshot_tree(actual), ignore_atime=True,
                          ignore_dir_mtimes=True, ignore_mtime=WHITEOUT_DEVICES)
    if problems:
        raise Mismatch(f"{actual}: {problems[:3]}")


# --------------------------------------------------------------------------- clients


class Client:
    """One client thread's calls, on its own channel and in its own directory."""

    def __init__(self, fixture: Fixture, stub: diff_pb2_grpc.DiffStub, home: Path,
                 seed: int) -> None:
        self.fx = fixture
        self.stub = stub
        self.home = home
        self.trash = home / "trash"
        self.trash.mkdir(parents=True)
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()

    def call(self, kind: str) -> str:
        """Issue one call of ``kind``; its outcome (``Mismatch`` if the answer is wrong)."""
        self.counts[kind] += 1
        verify = self.counts[kind] % VERIFY_EVERY == 1
        if kind.startswith("diff-"):
            return self._diff(kind)
        target = self.home / f"t{self.counts.total()}"
        try:
            return self._apply(kind, target, verify)
        finally:
            # A call cut short may still be writing there: move it aside, remove it later.
            if target.exists():
                os.rename(target, self.trash / target.name)

    def empty_trash(self) -> None:
        """Remove what earlier calls left (the server is done with it by now)."""
        for entry in os.listdir(self.trash):
            shutil.rmtree(self.trash / entry, ignore_errors=True)

    def _apply(self, kind: str, target: Path, verify: bool) -> str:
        fx, blobs = self.fx, self.fx.blobs
        target.mkdir()
        if kind == "apply-overlay":
            (target / "upper").mkdir()
            (target / "work").mkdir()
            mount = mount_pb2.Mount(type="overlay", source="overlay", options=[
                f"lowerdir={fx.base}", f"upperdir={target / 'upper'}",
                f"workdir={target / 'work'}"])
            self._check_apply(blobs["whiteouts"], [mount], diff_id(WHITEOUTS))
            if verify:
                same_tree(fx.trees["upper"], target / "upper")
            return OK
        if kind == "apply-whiteouts":
            target.rmdir()
            shutil.copytree(fx.base, target, symlinks=True)
            self._check_apply(blobs["whiteouts"], [bind(target, "rw")], diff_id(WHITEOUTS))
            if verify:
                same_tree(fx.trees["whiteouts"], target)
            return OK
        if kind == "apply-tmpfs":
            tmpfs = mount_pb2.Mount(type="tmpfs", source="tmpfs", options=["size=4m"])
            self._check_apply(blobs["zstd"], [tmpfs], diff_id(BASE))
            return OK
        if kind in ("apply-cancel", "apply-cancel-midway"):
            blob = blobs["never" if kind == "apply-cancel" else "big-cat"]
            future = self.stub.Apply.future(diff_pb2.ApplyRequest(
                diff=blob, mounts=[bind(target, "rw")]), timeout=WAIT)
            time.sleep(self.rng.uniform(0, 0.3))
            if future.cancel():  # type: ignore[no-untyped-call]  # untyped in grpc's stubs
                return CLIENT_CANCELLED
            return self._digest_is(future.result().applied.digest, diff_id(BIG_LAYER))
        if kind in ("apply-deadline", "apply-deadline-midway"):
            blob = blobs["never" if kind == "apply-deadline" else "big-gzip"]
            return self._check_apply(blob, [bind(target, "rw")], diff_id(BIG_LAYER),
                                     self.rng.uniform(0.05, 0.5))
        name = {"apply-tar": "tar", "apply-gzip": "gzip", "apply-zstd": "zstd",
                "apply-processor": "cat", "apply-corrupt": "corrupt"}[kind]
        self._check_apply(blobs[name], [bind(target, "rw")], diff_id(BASE))
        if verify:
            same_tree(fx.trees["base"], target)
        return OK

    def _check_apply(self, desc: descriptor_pb2.Descriptor, mounts: list[mount_pb2.Mount],
                     expected: str, timeout: float = WAIT) -> str:
        reply = self.stub.Apply(diff_pb2.ApplyRequest(diff=desc, mounts=mounts),
                                timeout=timeout)
        return self._digest_is(reply.applied.digest, expected)

    def _diff(self, kind: str) -> str:
        left, right, media_type = self.fx.diffs[kind]
        timeout = self.rng.uniform(0.05, 0.5) if kind == "diff-deadline" else WAIT
        reply = self.stub.Diff(diff_pb2.DiffRequest(left=left, right=right,
                                                    media_type=media_type), timeout=timeout)
        return self._digest_is(reply.diff.digest, self.fx.expected_diffs[kind])

    @staticmethod
    def _digest_is(digest: str, expected: str) -> str:
        if digest != expected:
            raise Mismatch(f"digest {digest}, expected {expected}")
        return OK


def run_client(client: Client, stats: Stats, stop: threading.Event) -> None:
    """Issue one call of every kind, then calls picked at random until ``stop`` is set;
    count each one's outcome."""
    kinds = list(KINDS)
    weights = [KINDS[k].weight for k in kinds]
    first_round = kinds[:]
    while first_round or not stop.is_set():
        kind = first_round.pop() if first_round else client.rng.choices(kinds, weights)[0]
        start = time.monotonic()
        message = ""
        try:
            outcome = client.call(kind)
        except grpc.RpcError as err:
            outcome = err.code().name if isinstance(err, grpc.Call) else CLIENT_ERROR
            message = err.details() if isinstance(err, grpc.Call) else str(err)
        except Mismatch as err:
            outcome, message = MISMATCH, str(err)
        except Exception as err:
            outcome, message = CLIENT_ERROR, repr(err)
        stats.record(kind, outcome, time.monotonic() - start, message or "")
        if client.counts.total() % 20 == 0:
            client.empty_trash()


# ---------------------------------------------------------------------------- the run


class Load:
    """A server, its fixture and a sampler, in a directory of their own on a tmpfs."""

    def __init__(self, work: Path, concurrency: int, interval: float = 2.0) -> None:
        self.work = work
        self.concurrency = concurrency
        self.interval = interval
        self.root = work / "fs"
        self.temp_root = self.root / "mounts"
        self.samples: list[Sample] = []
        self.phase = "start"
        self._start = time.monotonic()
        self._stop_sampler = threading.Event()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Load:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _setup(self) -> None:
        self.root.mkdir(parents=True)
        # A tmpfs of our own: the load measures the server, not this VM's erratic disk.
        mount("layerdiff-load", self.root, "tmpfs", 0, "size=2g,mode=0700")
        self._stack.callback(unmount, self.root, MNT_DETACH)
        self.temp_root.mkdir()
        store_root = self.root / "store"
        self.metrics_port = free_port()
        hold = 'while [ -e "$0" ]; do sleep 0.02; done; exec cat'
        self.hold_file = self.root / "hold"
        config = f"""
[server]
metrics_address = "127.0.0.1:{self.metrics_port}"
[content]
source = "local"
root = "{store_root}"
[mounts]
temp_root = "{self.temp_root}"
[limits]
concurrency = {self.concurrency}
[stream_processors.cat]
accepts = ["{CAT}"]
returns = "{MEDIA_TYPE_LAYER}"
path = "/bin/cat"
[stream_processors.never]
accepts = ["{NEVER}"]
returns = "{MEDIA_TYPE_LAYER}"
path = "/bin/sleep"
args = ["3600"]
[stream_processors.hold]
accepts = ["{HOLD}"]
returns = "{MEDIA_TYPE_LAYER}"
path = "/bin/sh"
args = ["-c", '{hold}', "{self.hold_file}"]
"""
        self.server = LayerdiffServer(self.work, config=config, env=MALLOC_ENV)
        self.server.start()
        self._stack.callback(self.server.stop)
        self.store = LocalStore(store_root)
        self._stack.callback(self.store.close)
        self.fixture = Fixture(self.root, self.store, self.temp_root)
        sampler = threading.Thread(target=self._sample_forever, daemon=True)
        sampler.start()
        self._stack.callback(sampler.join)
        self._stack.callback(self._stop_sampler.set)

    def sample(self) -> Sample:
        """The server now."""
        return sample_process(self.server.pid, self.root, self.temp_root,
                              time.monotonic() - self._start, self.phase)

    def _sample_forever(self) -> None:
        while not self._stop_sampler.wait(self.interval):
            self.samples.append(self.sample())

    def start_every_worker(self) -> None:
        """Hold enough calls at once that the server starts all its worker threads.

        gRPC's thread pool starts workers as calls come and never ends them: without this,
        a load with fewer clients than workers would look like a thread leak whenever a
        few cancelled calls still run server-side while new ones arrive.
        """
        workers = self.concurrency + 4  # layerdiff.server.Server's pool
        self.hold_file.touch()
        with (self.server.diff() as stub, ThreadPoolExecutor(workers) as pool):
            calls = [pool.submit(self._held_call, stub, i) for i in range(workers)]
            try:
                deadline = time.monotonic() + WAIT
                while self.in_flight() < workers:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the server never took every held call")
                    time.sleep(0.05)
            finally:
                self.hold_file.unlink()
            for c in calls:
                c.result(WAIT)

    def _held_call(self, stub: diff_pb2_grpc.DiffStub, i: int) -> None:
        target = self.root / f"held{i}"
        target.mkdir()
        stub.Apply(diff_pb2.ApplyRequest(diff=self.fixture.blobs["hold"],
                                         mounts=[bind(target, "rw")]), timeout=WAIT)
        shutil.rmtree(target)

    def in_flight(self) -> float:
        """Calls the server is running or queueing now, from its metrics."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=WAIT) as reply:
            text = reply.read().decode()
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "layerdiff_calls_in_flight")

    def drive(self, clients: int, seconds: float, stats: Stats, seed: int = 0) -> None:
        """Run ``clients`` client threads for ``seconds``, then wait for them."""
        stop = threading.Event()
        with contextlib.ExitStack() as stack:
            threads = []
            for i in range(clients):
                stub = stack.enter_context(self.server.diff())
                home = self.root / "clients" / f"c{i}"
                shutil.rmtree(home, ignore_errors=True)
                client = Client(self.fixture, stub, home, seed * 1000 + i)
                stack.callback(client.empty_trash)
                threads.append(threading.Thread(target=run_client, args=(client, stats, stop)))
            for t in threads:
                t.start()
            stop.wait(seconds)
            stop.set()
            for t in threads:
                t.join(WAIT)

    def wait_idle(self, baseline: Sample | None = None, timeout: float = WAIT) -> Sample:
        """Wait until the server is idle (no children, no mounts of ours, no calls in
        flight; with a ``baseline``, fds and threads back to it, else steady); the server
        then. After ``timeout``, the last sample, whatever it shows."""
        deadline = time.monotonic() + timeout
        last = self.sample()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.sample()
            quiet = not now.children and not now.ours and self.in_flight() == 0
            if baseline is not None:
                settled = now.fds <= baseline.fds and now.threads <= baseline.threads
            else:
                settled = (now.fds, now.threads) == (last.fds, last.threads)
            if quiet and settled:
                return now
            last = now
        return last


def run(
    work: Path,
    *,
    clients: int,
    concurrency: int,
    seconds: float,
    warmup: float = 10.0,
    interval: float = 2.0,
    progress: Callable[[str], object] = lambda line: None,
) -> Report:
    """A whole run: burst, warm-up, idle baseline, load for ``seconds``, idle end."""
    with Load(work, concurrency, interval) as load:
        load.phase = "warm-up"
        load.start_every_worker()
        warm = Stats()
        load.drive(clients, warmup, warm, seed=1)
        progress(f"warm-up: {warm.calls} calls, {warm.unexpected()} unexpected")
        load.phase = "idle"
        baseline = load.wait_idle()
        progress(f"baseline: {baseline}")
        load.phase = "load"
        stats = Stats()
        for (kind, outcome), n in warm.outcomes.items():  # the warm-up's surprises count too
            if outcome not in KINDS[kind].outcomes:
                stats.outcomes[kind, outcome] += n
        stats.problems += warm.problems
        started = time.monotonic()
        load.drive(clients, seconds, stats, seed=2)
        elapsed = time.monotonic() - started
        load.phase = "end"
        end = load.wait_idle(baseline)
        progress(f"end: {end}")
        ingests = [status.ref for status in load.store.list_statuses()]
        return Report(clients, concurrency, elapsed, stats, list(load.samples), baseline, end,
                      ingests)


def rss_bound_kib(calls: int, leak_per_call_kib: int = 10, floor_kib: int = 8 << 10) -> int:
    """How much RSS may grow under load: half of what a leak of ``leak_per_call_kib``
    per call would add, but never less than ``floor_kib`` (the allocators' noise)."""
    return max(floor_kib, calls * leak_per_call_kib // 2)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.support.load``: run, print the table and the verdict."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.load", description=__doc__
                                     .split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--rss-bound-mib", type=float, default=20.0)
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (mounts)")
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="layerdiff-load-")))
        report = run(work, clients=args.clients, concurrency=args.concurrency,
                     seconds=args.minutes * 60, warmup=args.warmup, interval=args.interval,
                     progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.table())
    print()
    for s in report.samples:
        print(dataclasses.asdict(s))
    problems = report.problems(rss_growth_kib=int(args.rss_bound_mib * 1024))
    print("\nverdict:", "PASS" if not problems else "FAIL")
    for p in problems:
        print("  " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
