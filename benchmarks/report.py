"""The benchmark's table, the issue's targets checked against it, and docs/benchmarks.md.

Ratios are taken within one cell (one layer with one compression, or one diff), between
medians of runs alternated in the same session: to containerd's walking differ, to the
fastest decompression floor of the cell (``gzip -dc`` or ``pigz -dc``; ``cat`` for a
plain tar) and to the fastest GNU tar of the cell (the stricter of tar through gzip and
tar through pigz).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.measure import Summary

# Kinds of contender: what a ratio column is taken against.
FLOOR, TAR, CONTAINERD, LAYERDIFF = "floor", "tar", "containerd", "layerdiff"
COLUMNS = ("data set", "layer", "contender", "median s", "min-max s", "x containerd",
           "x floor", "x GNU tar", "peak RSS MiB")
ANALYSIS_HEADING = "## Analysis"
_MiB = 1 << 20


@dataclass(frozen=True)
class Row:
    """One contender on one cell."""

    section: str  # "apply" or "diff"
    dataset: str
    layer: str  # the blob's suffix (tar, tar.gz, tar.zst)
    contender: str
    kind: str
    summary: Summary


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, checked on one cell."""

    what: str
    value: float
    limit: float

    @property
    def passed(self) -> bool:
        """Whether the measured value is within the limit."""
        return self.value <= self.limit


def _cell(rows: Sequence[Row], row: Row) -> list[Row]:
    return [r for r in rows if (r.section, r.dataset, r.layer) == (row.section, row.dataset,
                                                                    row.layer)]


def _best(cell: Sequence[Row], kind: str) -> float | None:
    times = [r.summary.median for r in cell if r.kind == kind]
    return min(times) if times else None


def _ratio(value: float, base: float | None) -> str:
    return "-" if base is None or base <= 0 else f"{value / base:.2f}"


def table(rows: Sequence[Row]) -> list[list[str]]:
    """The table's cells as text, one list per row, in COLUMNS order."""
    lines = []
    for row in rows:
        cell = _cell(rows, row)
        s = row.summary
        lines.append([
            row.dataset, row.layer if row.section == "apply" else f"diff to {row.layer}",
            row.contender, f"{s.median:.3f}", f"{s.low:.3f}-{s.high:.3f}",
            _ratio(s.median, _best(cell, CONTAINERD)), _ratio(s.median, _best(cell, FLOOR)),
            _ratio(s.median, _best(cell, TAR)), f"{s.peak_rss / _MiB:.0f}",
        ])
    return lines


def text_table(rows: Sequence[Row]) -> str:
    """The table for a terminal: aligned columns."""
    lines = [list(COLUMNS), *table(rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths, strict=True)))
                     for line in lines)


def markdown_table(rows: Sequence[Row]) -> str:
    """The table in Markdown."""
    lines = [list(COLUMNS), *table(rows)]
    out = ["| " + " | ".join(lines[0]) + " |",
           "|" + "|".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines[1:]]
    return "\n".join(out)


def targets(rows: Sequence[Row]) -> list[Target]:
    """The issue's targets, on every cell where both sides were measured."""
    found = []
    for row in rows:
        cell = _cell(rows, row)
        s = row.summary
        name = f"{row.section} {row.dataset} {row.layer}: {row.contender}"
        if row.kind == LAYERDIFF:
            found.append(Target(f"{name}: peak RSS MiB", s.peak_rss / _MiB, 150))
        if row.kind != LAYERDIFF:
            continue
        containerd = _best(cell, CONTAINERD)
        if row.section == "apply" and row.layer != "tar":
            tar = _best(cell, TAR)
            if containerd is not None:
                found.append(Target(f"{name}: x containerd", s.median / containerd, 0.8))
            if tar is not None:
                found.append(Target(f"{name}: x GNU tar", s.median / tar, 1.3))
        elif row.section == "diff" and "double walk" in row.contender and containerd:
            found.append(Target(f"{name}: x containerd", s.median / containerd, 0.8))
        elif row.section == "diff" and "fast path" in row.contender:
            walk = [r for r in cell if r.contender == row.contender.replace(
                "overlay fast path", "double walk")]
            if walk:
                found.append(Target(f"{name}: x double walk", s.median / walk[0].summary.median,
                                    0.1))
    return found


def targets_markdown(found: Sequence[Target]) -> str:
    """The targets as a Markdown list: every time target, misses first; memory summed up."""
    memory = [t for t in found if t.what.endswith("peak RSS MiB")]
    times = sorted((t for t in found if t not in memory), key=lambda t: t.passed)
    lines = [f"- **{'pass' if t.passed else 'MISS'}** {t.what} = {t.value:.2f} "
             f"(target <= {t.limit:g})" for t in times]
    lines += [f"- **MISS** {t.what} = {t.value:.0f} (target <= {t.limit:g})"
              for t in memory if not t.passed]
    if memory:
        top = max(memory, key=lambda t: t.value)
        lines.append(f"- peak RSS: {sum(t.passed for t in memory)} of {len(memory)} layerdiff "
                     f"rows within {top.limit:g} MiB; the largest: {top.what} = "
                     f"{top.value:.0f}")
    passed = sum(t.passed for t in found)
    return f"{passed} of {len(found)} pass.\n\n" + "\n".join(lines)


def write_markdown(
    path: Path,
    *,
    intro: str,
    machine: dict[str, str],
    versions: dict[str, str],
    contenders: str,
    rows: Sequence[Row],
    settings: str,
) -> None:
    """Write docs/benchmarks.md, keeping what follows ANALYSIS_HEADING in the old file."""
    analysis = ""
    if path.exists():
        old = path.read_text()
        if ANALYSIS_HEADING in old:
            analysis = old[old.index(ANALYSIS_HEADING):]
    parts = [
        intro.strip(),
        "## Machine\n\n" + "\n".join(f"- {k}: {v}" for k, v in machine.items()),
        "## Tools\n\n" + "\n".join(f"- {k}: {v}" for k, v in versions.items()),
        "## What each contender does\n\n" + contenders.strip(),
        "## Results\n\n" + settings.strip() + "\n\n" + markdown_table(rows),
        "## Targets\n\n" + targets_markdown(targets(rows)),
    ]
    if analysis:
        parts.append(analysis.strip())
    path.write_text("\n\n".join(parts) + "\n")
