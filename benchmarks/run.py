"""layerdiff side by side with containerd 1.7's walking differ, GNU tar and the
decompression floor, in one run on one machine.

    python -m benchmarks.run [--runs 5] [--scale 1] [--rootfs debootstrap|synthetic]
        [--datasets rootfs small ...] [--on-disk DIR] [--no-containerd] [--no-diff]
        [--output docs/benchmarks.md | --no-write] [--profile small.tar.gz]

Every contender runs on every data set (benchmarks/data.py) ``--runs`` times; the table
has medians. Runs are alternated: each round runs every contender of a cell once, the
order rotated from round to round, so that the drift of these VMs' disks and caches falls
on all alike. Each apply runs on a fresh tmpfs mounted for it (or with ``--on-disk DIR``
a cleaned directory there, after a ``sync``). containerd, tmpfs and overlay mounts need
root: without root the target is a cleaned directory under the system's temp folder and
containerd and the diff benchmark are left out.

``--profile LAYER`` (e.g. ``small.tar.gz``) instead applies one layer once with the
library under cProfile and prints the top of the profile (main thread only: work done on
layerdiff's helper threads shows as waiting).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import cProfile
import hashlib
import pstats
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import layerdiff
from benchmarks import contenders as c
from benchmarks import machine, report
from benchmarks.common import (
    DEFAULT_CACHE,
    REPO,
    BenchError,
    is_root,
    private_tools,
    remove_tree,
    run,
    system_tool,
)
from benchmarks.containerd_bench import ContainerdBench
from benchmarks.data import DATASETS, ROOTFS_KINDS, SUFFIXES, DataSet, prepare
from benchmarks.measure import Sample, Summary
from layerdiff import ApplyOptions, apply_layer

DIFF_SUFFIXES = ("tar", "tar.gz")
_T = TypeVar("_T")
INTRO = """\
# Benchmarks

layerdiff against containerd 1.7's walking differ, GNU tar and the decompression floor,
measured in one run on one machine by `benchmarks/run.py` (data: `benchmarks/data.py`;
see their docstrings). Regenerate with `sudo .venv/bin/python -m benchmarks.run` from the
repository root; everything above "Analysis" is rewritten by each run.
"""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def fresh_target(
    place: Path, tmpfs: bool, base: Path | None, tools: c.Tools
) -> Iterator[Path]:
    """An empty target (a new tmpfs, or a cleaned directory), holding ``base`` extracted."""
    if not tmpfs:
        remove_tree(place)
    place.mkdir(parents=True, exist_ok=True)
    if tmpfs:
        run([system_tool("mount"), "-t", "tmpfs", "-o", "size=75%,mode=755", "tmpfs",
             str(place)])
    try:
        if base is not None:
            extract(base, place, tools)
        if not tmpfs:
            run([system_tool("sync")])
        yield place
    finally:
        if tmpfs:
            run([system_tool("umount"), str(place)])
        else:
            remove_tree(place)


def extract(tar: Path, dest: Path, tools: c.Tools) -> None:
    """Extract a plain layer tar with GNU tar (untimed preparation)."""
    run([tools.tar, "-x", "-f", str(tar), "-C", str(dest), "-p", "--numeric-owner",
         "--xattrs", "--xattrs-include=*"])


@contextlib.contextmanager
def diff_inputs(work: Path, rootfs: DataSet, delta: DataSet, tools: c.Tools) -> Iterator[
        c.DiffInputs]:
    """rootfs on a tmpfs as the lower tree, delta applied through an overlay over it."""
    with fresh_target(work / "diff", True, None, tools) as root:
        lower, upper, overlay_work, merged, out = (root / n for n in (
            "lower", "upper", "work", "merged", "out"))
        for d in (lower, upper, overlay_work, merged, out):
            d.mkdir()
        extract(rootfs.blob("tar"), lower, tools)
        run([system_tool("mount"), "-t", "overlay", "-o",
             f"lowerdir={lower},upperdir={upper},workdir={overlay_work}", "overlay",
             str(merged)])
        try:
            apply_layer(delta.blob("tar"), merged, ApplyOptions())
            yield c.DiffInputs(lower, merged, upper, out / "layer")
        finally:
            run([system_tool("umount"), str(merged)])


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def _rotated(items: Sequence[_T], n: int) -> list[_T]:
    k = n % len(items)
    return [*items[k:], *items[:k]]


def measure_all(
    sets: dict[str, DataSet],
    *,
    runs: int,
    tools: c.Tools,
    work: Path,
    on_disk: Path | None,
    containerd: ContainerdBench | None,
    diff: bool,
) -> list[report.Row]:
    """Run every contender on every cell ``runs`` times, alternated; the table's rows."""
    tmpfs = on_disk is None and is_root()
    place = (on_disk or work) / "target"
    descriptors = {}
    if containerd is not None:
        for data in sets.values():
            for suffix in SUFFIXES:
                blob = data.blob(suffix)
                descriptors[blob] = containerd.ingest(blob, suffix, _digest(blob))
    ctr_apply: Callable[[Path, Path], Sample] | None = None
    ctr_diff: Callable[[c.DiffInputs, str], Sample] | None = None
    if containerd is not None:
        bench = containerd

        def ctr_apply(blob: Path, dest: Path) -> Sample:
            return bench.apply(descriptors[blob], dest)

        def ctr_diff(inputs: c.DiffInputs, suffix: str) -> Sample:
            return bench.diff(inputs.lower, inputs.merged, suffix)

    samples: dict[tuple[str, str, str, str], list[Sample]] = {}
    kinds: dict[str, str] = {}
    for round_ in range(runs):
        for data in sets.values():
            base = sets[data.base].blob("tar") if data.base else None
            for suffix in SUFFIXES:
                for contender in _rotated(c.apply_contenders(suffix, tools, ctr_apply), round_):
                    _log(f"round {round_ + 1}/{runs}: apply {data.name}.{suffix}: "
                         f"{contender.name}")
                    with fresh_target(place, tmpfs, base, tools) as dest:
                        sample = contender.run(data.blob(suffix), dest)
                    samples.setdefault(("apply", data.name, suffix, contender.name),
                                       []).append(sample)
                    kinds[contender.name] = contender.kind
    if diff and {"rootfs", "delta"} <= sets.keys():
        with diff_inputs(work, sets["rootfs"], sets["delta"], tools) as inputs:
            for round_ in range(runs):
                for suffix in DIFF_SUFFIXES:
                    for differ in _rotated(c.diff_contenders(ctr_diff), round_):
                        _log(f"round {round_ + 1}/{runs}: diff rootfs+delta to {suffix}: "
                             f"{differ.name}")
                        sample = differ.run(inputs, suffix)
                        inputs.out.unlink(missing_ok=True)
                        samples.setdefault(("diff", "rootfs+delta", suffix, differ.name),
                                           []).append(sample)
                        kinds[differ.name] = differ.kind
    # In the order of the contender lists: first seen first.
    return [report.Row(section, dataset, suffix, name, kinds[name], Summary.of(found))
            for (section, dataset, suffix, name), found in samples.items()]


def profile(sets: dict[str, DataSet], layer: str, work: Path, tools: c.Tools) -> None:
    """Apply one layer once under cProfile and print the top of the profile."""
    name, _, suffix = layer.partition(".")
    if name not in sets or suffix not in SUFFIXES:
        raise BenchError(f"--profile takes NAME.SUFFIX, e.g. small.tar.gz, not {layer!r}")
    data = sets[name]
    base = sets[data.base].blob("tar") if data.base else None
    profiler = cProfile.Profile()
    with fresh_target(work / "target", is_root(), base, tools) as dest:
        profiler.runcall(apply_layer, data.blob(suffix), dest, ApplyOptions())
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table, and write it to the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rootfs", choices=ROOTFS_KINDS, default="debootstrap")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--on-disk", type=Path, metavar="DIR",
                        help="apply into DIR/target on disk instead of a tmpfs")
    parser.add_argument("--no-containerd", action="store_true")
    parser.add_argument("--no-diff", action="store_true")
    parser.add_argument("--output", type=Path, default=REPO / "docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--profile", metavar="LAYER", help="profile one apply, e.g. small.tar.gz")
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except BenchError as err:
        print(f"benchmark: error: {err}", file=sys.stderr)
        return 1


def byte_compile_layerdiff() -> None:
    """Write layerdiff's bytecode caches, as pip does when it installs a package: the CLI
    is measured as installed, not compiling its modules on each start (which it would,
    in a source checkout run with PYTHONDONTWRITEBYTECODE set)."""
    package = Path(layerdiff.__file__).parent
    if not compileall.compile_dir(package, quiet=1):
        raise BenchError(f"cannot byte-compile {package}")


def _main(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise BenchError("--runs must be at least 1")
    byte_compile_layerdiff()
    sets = prepare(args.cache, args.scale, args.rootfs, _log)
    if "delta" in args.datasets and "rootfs" not in args.datasets:
        args.datasets.append("rootfs")  # delta applies over it
    sets = {name: sets[name] for name in DATASETS if name in args.datasets}
    tools = c.Tools(cat=system_tool("cat"), tar=system_tool("tar"), gzip=system_tool("gzip"),
                    pigz=str(private_tools() / "pigz"), zstd=system_tool("zstd"))
    root = is_root()
    if not root:
        _log("not root: no tmpfs targets, no containerd, no diff benchmark")
    with tempfile.TemporaryDirectory(prefix="layerdiff-bench-") as tmp:
        work = Path(tmp)
        if args.profile:
            profile(sets, args.profile, work, tools)
            return 0
        use_containerd = root and not args.no_containerd
        with contextlib.ExitStack() as stack:
            containerd = (stack.enter_context(ContainerdBench(work / "containerd"))
                          if use_containerd else None)
            versions = machine.versions(
                {"GNU tar": tools.tar, "gzip": tools.gzip, "pigz": tools.pigz,
                 "zstd": tools.zstd})
            if containerd is not None:
                versions["containerd"] = containerd.version()
            rows = measure_all(sets, runs=args.runs, tools=tools, work=work,
                               on_disk=args.on_disk, containerd=containerd,
                               diff=root and not args.no_diff)
    print(report.text_table(rows))
    found = report.targets(rows)
    print(f"\ntargets: {sum(t.passed for t in found)} of {len(found)} pass")
    if not args.no_write:
        where = (f"{args.on_disk} ({machine.file_system(args.on_disk)})" if args.on_disk
                 else "a fresh tmpfs per run" if root else "a cleaned directory in /tmp")
        settings = (
            f"{args.runs} runs of each contender per cell, alternated; medians. Scale "
            f"{args.scale:g}, rootfs {args.rootfs}. Layers: "
            + "; ".join(f"{d.name} {d.entries} entries, {d.tar_bytes / (1 << 20):.0f} MiB of "
                        "tar" for d in sets.values())
            + f". Targets: {where}."
        )
        report.write_markdown(
            args.output, intro=INTRO, machine=machine.describe(where, args.cache),
            versions=versions, contenders=c.DESCRIPTION, rows=rows, settings=settings,
        )
        _log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
