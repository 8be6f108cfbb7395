"""How the overlay fast path's cost follows the change, and the double walk's the tree.

For trees of growing size, files are changed through a mounted overlay (half rewritten,
a quarter deleted, a quarter added next to them) — 1% of the tree, then a fixed 100
files; then the same layer is computed twice: from the upperdir alone
(``--upper-overlay``) and by the double walk of the lower tree against the mounted view.
Both must give the same bytes; the times are the best of a few runs, the layer
uncompressed (compression costs both the same).

Run as root (it mounts a tmpfs and overlays on it)::

    .venv/bin/python benchmarks/diff_overlay.py [--files 10000 40000 160000] [--percent 1]
        [--fixed 100]

This is not a test: the tests never depend on timing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from layerdiff import DiffOptions, diff_trees
from layerdiff.compression import Compression


def mount(fstype: str, target: Path, options: str) -> None:
    subprocess.run(["mount", "-t", fstype, "-o", options, fstype, str(target)], check=True)


def unmount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True)

FILES_PER_DIR = 50


class _Counter:
    """A binary sink that only counts (and hashes nothing): the layer's bytes are not kept."""

    def __init__(self) -> None:
        self.size = 0
        self.head = b""

    def write(self, data: bytes) -> int:
        if len(self.head) < 1 << 16:
            self.head += data[: (1 << 16) - len(self.head)]
        self.size += len(data)
        return len(data)


def build(lower: Path, files: int) -> list[Path]:
    paths = []
    for i in range(files):
        directory = lower / f"d{i // (FILES_PER_DIR * FILES_PER_DIR):03d}" / (
            f"s{i // FILES_PER_DIR % FILES_PER_DIR:03d}"
        )
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"f{i % FILES_PER_DIR:03d}.py"
        path.write_bytes(b"# module %d\n" % i * (1 + i % 40))
        paths.append(path.relative_to(lower))
    return paths


def change(merged: Path, paths: list[Path], count: int) -> int:
    step = max(1, len(paths) // count)
    changed = 0
    for n, rel in enumerate(paths[::step][:count]):
        path = merged / rel
        if n % 4 < 2:
            with open(path, "ab") as f:
                f.write(b"# changed\n")
        elif n % 4 == 2:
            path.unlink()
        else:
            path.with_name("new-" + path.name).write_bytes(b"new\n")
        changed += 1
    return changed


@contextlib.contextmanager
def overlay(root: Path, files: int) -> Iterator[tuple[Path, Path, Path, list[Path]]]:
    lower, upper, work, merged = (root / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    paths = build(lower, files)
    mount("overlay", merged, f"lowerdir={lower},upperdir={upper},workdir={work}")
    try:
        yield lower, upper, merged, paths
    finally:
        unmount(merged)


def best_of(runs: int, fn: Callable[[], _Counter]) -> tuple[float, _Counter]:
    best, result = float("inf"), _Counter()
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, nargs="+", default=[10_000, 40_000, 160_000])
    parser.add_argument("--percent", type=float, default=1.0, help="first series: this share")
    parser.add_argument("--fixed", type=int, default=100, help="second series: this many")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark mounts a tmpfs and overlays")
    options = DiffOptions(compression=Compression.NONE)
    fast_options = DiffOptions(compression=Compression.NONE, upper_overlay=True)
    print(f"{'files':>8} {'changed':>8} {'layer':>10} {'fast path':>10} {'double walk':>12}"
          f" {'ratio':>6}")
    series = [(files, round(files * args.percent / 100)) for files in args.files]
    series += [(files, args.fixed) for files in args.files]
    with tempfile.TemporaryDirectory(prefix="layerdiff-bench-") as tmp:
        mount("tmpfs", Path(tmp), "size=4g")
        try:
            for run, (files, count) in enumerate(series):
                root = Path(tmp, str(run))
                root.mkdir()
                with overlay(root, files) as (lower, upper, merged, paths):
                    changed = change(merged, paths, count)

                    def fast(lower: Path = lower, upper: Path = upper) -> _Counter:
                        out = _Counter()
                        diff_trees([lower], upper, out, fast_options)
                        return out

                    def walk(lower: Path = lower, merged: Path = merged) -> _Counter:
                        out = _Counter()
                        diff_trees(lower, merged, out, options)
                        return out

                    fast_s, fast_out = best_of(args.runs, fast)
                    walk_s, walk_out = best_of(args.runs, walk)
                    assert (fast_out.size, fast_out.head) == (walk_out.size, walk_out.head)
                    print(f"{files:>8} {changed:>8} {fast_out.size:>10} {fast_s:>9.3f}s"
                          f" {walk_s:>11.3f}s {walk_s / fast_s:>5.0f}x", flush=True)
                subprocess.run(["rm", "-rf", str(root)], check=True)
        finally:
            unmount(Path(tmp))

if __name__ == "__main__":
    main()
