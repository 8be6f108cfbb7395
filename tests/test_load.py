"""``layerdiff serve`` under a bounded load: every call answers as it must, and once the
load is over the server holds what it held before it (fds, threads, no children, no
mounts; RSS within a bound a leak would break).

The driver is ``tests/support/load.py`` (also a command, for the longer documented run
in docs/reliability.md). Here: 8 clients for 30 s, with fewer slots than clients (calls
queue) and with more (they all run at once).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from layerdiff.comparer import Writable, diff_trees
from layerdiff.compression import Compression
from layerdiff.content.local import LocalStore
from layerdiff.diff import DiffOptions
from layerdiff.errors import DeadlineExceededError, LayerdiffError, TargetError
from tests.support.load import KINDS, rss_bound_kib, run

CLIENTS = 8
SECONDS = 30.0
#: What a leak of one small object per call would add; the RSS bound must catch it.
LEAK_PER_CALL_KIB = 10


@pytest.mark.root
@pytest.mark.parametrize("concurrency", [4, 16], ids=["queued", "all-at-once"])
def test_a_load_ends_with_every_call_right_and_nothing_leaked(
    tmp_path: Path, concurrency: int
) -> None:
    if os.geteuid() != 0:
        pytest.skip("layerdiff serve mounts: needs root")
    report = run(tmp_path, clients=CLIENTS, concurrency=concurrency, seconds=SECONDS,
                 warmup=5.0, interval=2.0)
    print(report.table())
    stats = report.stats
    assert stats.unexpected() == 0, stats.problems
    # Every kind ran, the failing ones included (each client starts with one of each).
    assert {kind for kind, _ in stats.outcomes} == set(KINDS)
    bound = rss_bound_kib(stats.calls, LEAK_PER_CALL_KIB)
    assert report.problems(rss_growth_kib=bound) == []


class _FailingFlush:
    """An output whose final flush fails (a full disk, say)."""

    def write(self, data: bytes, /) -> int:
        return len(data)

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


class _PastDeadline:
    """An output that refuses every write, as ``CancellableWriter`` past a deadline."""

    def write(self, data: bytes, /) -> int:
        raise DeadlineExceededError("the call ran past its deadline")


def _diff_in_thread(upper: Path, out: Writable, options: DiffOptions | None = None
                    ) -> list[BaseException]:
    """Run ``diff_trees`` on a thread (it used to hang); what it raised."""
    raised: list[BaseException] = []

    def diff() -> None:
        try:
            diff_trees(None, upper, out, options)
        except LayerdiffError as err:
            raised.append(err)

    worker = threading.Thread(target=diff, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "diff_trees hung after its output failed"
    return raised


def _compressing_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "layerdiff-compress"}


def test_a_failure_after_the_last_chunk_is_raised_not_hung(tmp_path: Path) -> None:
    # Found by the load: a Diff whose deadline passed during the compressor's final
    # flush never returned, holding its slot, its mounts and its ingest for good.
    (tmp_path / "file").write_bytes(b"x" * 1000)
    [raised] = _diff_in_thread(tmp_path, _FailingFlush())
    assert isinstance(raised, TargetError) and "No space left on device" in str(raised)


def test_a_failed_output_leaves_no_compressing_thread_behind(tmp_path: Path) -> None:
    # Found by the load: when the output had failed by the time the walk ended (a
    # deadline), the end marker was never sent and the compressing thread waited for
    # it forever: one thread leaked per such call. Here the first 1 MiB piece fails
    # while the walk goes on through small entries, which stay under a chunk.
    (tmp_path / "a").write_bytes(b"x" * (1 << 20))
    for i in range(300):
        (tmp_path / f"b{i:04}").touch()
    before = _compressing_threads()
    [raised] = _diff_in_thread(tmp_path, _PastDeadline(), DiffOptions(Compression.NONE))
    assert isinstance(raised, DeadlineExceededError)
    assert _compressing_threads() - before == set()


def test_an_abort_is_not_refused_for_a_lock_a_forked_child_still_holds(tmp_path: Path) -> None:
    # Found by the load: a child forked by another thread (a stream processor starting)
    # shares a writer's lock until it execs; a Diff that failed then could not abort its
    # ingest, which stayed in the store. The child here holds it for 0.2 s.
    store = LocalStore(tmp_path)
    try:
        writer = store.writer("ref")
        writer.write(b"partial")
        child = os.fork()
        if child == 0:
            time.sleep(0.2)
            os._exit(0)
        writer.close()
        store.abort("ref")
        assert store.list_statuses() == []
        os.waitpid(child, 0)
    finally:
        store.close()
