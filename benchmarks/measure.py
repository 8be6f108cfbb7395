"""Timing and peak memory of one run of a contender, each in a fresh child process.

The wall time is taken around the child's whole life (start-up included: a command
line's start-up is part of its cost), except for a self-timed child (the library
contenders), which prints ``{"seconds": ...}`` for the call alone. Peak memory is the
child's ``ru_maxrss`` from ``wait4``: the largest resident set of the child and of the
descendants it waited for (GNU tar's decompressor, for instance), as GNU time's ``%M``
reports it. Why GNU time in between: Linux carries the high-water mark of the memory a
process had before ``exec`` into its ``ru_maxrss``, and a child forked from this Python
process would start from this process's ~45 MiB; forked from GNU time, from ~1.6 MiB.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import BenchError

TIME = "/usr/bin/time"  # GNU time (Debian's package "time")


@dataclass(frozen=True)
class Sample:
    """One run: wall seconds and peak resident set in bytes."""

    seconds: float
    peak_rss: int


@dataclass(frozen=True)
class Summary:
    """The runs of one contender on one layer."""

    median: float
    low: float
    high: float
    peak_rss: int  # the largest of the runs
    runs: int

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Summary:
        """Median, range and peak of some samples."""
        times = [s.seconds for s in samples]
        return cls(statistics.median(times), min(times), max(times),
                   max(s.peak_rss for s in samples), len(samples))


def run_child(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    self_timed: bool = False,
    stdout_to: Path | None = None,
) -> Sample:
    """Run argv in a fresh child; its standard output goes to /dev/null or ``stdout_to``.

    Raises ``BenchError`` with the end of its standard error if it fails.
    """
    out = os.open(stdout_to or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with tempfile.TemporaryFile() as stderr, tempfile.NamedTemporaryFile() as usage:
            start = time.perf_counter()
            process = subprocess.Popen(
                [TIME, "-f", "%M", "-o", usage.name, "--", *argv], cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE if self_timed else out,
                stderr=stderr,
            )
            printed = b""
            if process.stdout is not None:
                with process.stdout:
                    printed = process.stdout.read()
            process.wait()
            elapsed = time.perf_counter() - start
            if process.returncode != 0:
                stderr.seek(0)
                message = stderr.read().decode(errors="replace").strip()[-400:]
                raise BenchError(f"{' '.join(argv[:4])}... failed ({process.returncode}): "
                                 f"{message}")
            peak_kib = int(usage.read().split()[-1])
    finally:
        os.close(out)
    if self_timed:
        elapsed = float(json.loads(printed.decode().strip().splitlines()[-1])["seconds"])
    return Sample(elapsed, peak_kib * 1024)
