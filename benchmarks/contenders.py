"""Who is measured, and exactly how: the commands behind every row of the table."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import REPO
from benchmarks.measure import Sample, run_child
from benchmarks.report import CONTAINERD, FLOOR, LAYERDIFF, TAR

DESCRIPTION = """\
Apply (a fresh, empty target for each run; for `delta`, a fresh target already holding
the extracted `rootfs`, untimed):

- **floor**: the decompressor alone, blob to /dev/null: `cat` (plain tar), `gzip -dc`,
  `pigz -dc`, `zstd -dc`. Wall time of the process.
- **GNU tar**: `tar -x -f BLOB -C DEST -p --numeric-owner --xattrs --xattrs-include='*'`,
  through `--use-compress-program` gzip, pigz or zstd (tar forks it and pipes). Wall
  time of the process. GNU tar knows no whiteouts: on `delta` it writes the `.wh.*`
  files instead of deleting, i.e. it does less work than a layer applier.
- **containerd**: containerd 1.7's walking differ, `Diff.Apply` over gRPC with a bind
  mount of the target (see benchmarks/containerd_bench.py): mount, read the blob from its
  content store, decompress (Go), hash, apply. Time of the call; the blob was ingested
  beforehand, untimed. Peak RSS is the whole daemon's.
- **layerdiff CLI**: `python -m layerdiff apply BLOB DEST`: wall time of the process,
  interpreter start-up and imports included (the package byte-compiled beforehand, as
  pip leaves it installed).
- **layerdiff library**: `apply_layer(BLOB, DEST)` in a fresh process; the call alone is
  timed, peak RSS is the process's (the interpreter included).

Diff (lower: `rootfs` extracted on a tmpfs; upper: an overlay over it with `delta`
applied through the merged view, i.e. ~1% of the files changed; both fixed for the
whole run):

- **containerd**: `Diff.Diff` over gRPC, lower and merged view as read-only bind mounts:
  continuity's double walk, the layer written into its content store (what `ctr
  snapshots diff` asks for, without ctr copying the blob to its stdout). gzip is Go's
  default level.
- **layerdiff double walk**: `layerdiff diff --compression C LOWER MERGED -o OUT` (CLI)
  and `diff_trees(LOWER, MERGED, out)` (library, call alone timed). gzip is layerdiff's
  default (ISA-L level 2).
- **layerdiff overlay fast path**: the same with `--upper-overlay LOWER UPPERDIR`: only
  the upperdir is walked.
"""


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the external programs."""

    cat: str
    tar: str
    gzip: str
    pigz: str
    zstd: str


@dataclass(frozen=True)
class ApplyContender:
    """A contender for apply: ``run(blob, dest)`` measures one run."""

    name: str
    kind: str
    run: Callable[[Path, Path], Sample]


@dataclass(frozen=True)
class DiffInputs:
    """The fixed inputs of the diff benchmark."""

    lower: Path
    merged: Path  # the overlay's merged view: the upper tree for a double walk
    upperdir: Path  # the overlay's upperdir, for the fast path
    out: Path  # where the layer is written (removed after each run)


@dataclass(frozen=True)
class DiffContender:
    """A contender for diff: ``run(inputs, suffix)`` measures one run."""

    name: str
    kind: str
    run: Callable[[DiffInputs, str], Sample]


_COMPRESSION = {"tar": "none", "tar.gz": "gzip", "tar.zst": "zstd"}


def _command(argv: list[str]) -> Callable[[Path, Path], Sample]:
    def measure(blob: Path, dest: Path) -> Sample:
        return run_child([a.format(blob=blob, dest=dest) for a in argv])

    return measure


def apply_contenders(
    suffix: str, tools: Tools, containerd: Callable[[Path, Path], Sample] | None
) -> list[ApplyContender]:
    """Every apply contender for a blob with this suffix (containerd's if given)."""
    floors = {"tar": [("cat", [tools.cat])],
              "tar.gz": [("gzip", [tools.gzip, "-dc"]), ("pigz", [tools.pigz, "-dc"])],
              "tar.zst": [("zstd", [tools.zstd, "-dc", "-q"])]}[suffix]
    found = [ApplyContender(f"floor: {name}", FLOOR, _command([*argv, "{blob}"]))
             for name, argv in floors]
    tar = [tools.tar, "-x", "-f", "{blob}", "-C", "{dest}", "-p", "--numeric-owner",
           "--xattrs", "--xattrs-include=*"]
    if suffix == "tar":
        found.append(ApplyContender("GNU tar", TAR, _command(tar)))
    for name, argv in floors if suffix != "tar" else []:
        found.append(ApplyContender(f"GNU tar ({name})", TAR,
                                    _command([*tar, "--use-compress-program", argv[0]])))
    if containerd is not None:
        found.append(ApplyContender("containerd 1.7", CONTAINERD, containerd))
    found.append(ApplyContender("layerdiff CLI", LAYERDIFF, _command(
        [sys.executable, "-m", "layerdiff", "apply", "{blob}", "{dest}"])))

    def library(blob: Path, dest: Path) -> Sample:
        return run_child([sys.executable, "-m", "benchmarks.child", "apply", str(blob),
                          str(dest)], cwd=REPO, self_timed=True)

    found.append(ApplyContender("layerdiff library", LAYERDIFF, library))
    return found


def diff_contenders(
    containerd: Callable[[DiffInputs, str], Sample] | None,
) -> list[DiffContender]:
    """Every diff contender (containerd's if given)."""
    found = []
    if containerd is not None:
        found.append(DiffContender("containerd 1.7", CONTAINERD, containerd))
    for label, fast in (("double walk", False), ("overlay fast path", True)):

        def cli(inputs: DiffInputs, suffix: str, fast: bool = fast) -> Sample:
            trees = ["--upper-overlay", str(inputs.lower), str(inputs.upperdir)] if fast else [
                str(inputs.lower), str(inputs.merged)]
            return run_child([sys.executable, "-m", "layerdiff", "diff", "--compression",
                              _COMPRESSION[suffix], *trees, "-o", str(inputs.out)])

        def library(inputs: DiffInputs, suffix: str, fast: bool = fast) -> Sample:
            upper = inputs.upperdir if fast else inputs.merged
            flag = ["--upper-overlay"] if fast else []
            return run_child([sys.executable, "-m", "benchmarks.child", "diff",
                              str(inputs.lower), str(upper), str(inputs.out),
                              _COMPRESSION[suffix], *flag], cwd=REPO, self_timed=True)

        found.append(DiffContender(f"layerdiff CLI {label}", LAYERDIFF, cli))
        found.append(DiffContender(f"layerdiff library {label}", LAYERDIFF, library))
    return found
