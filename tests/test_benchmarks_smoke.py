"""The benchmark harness runs end to end at a tiny scale and reports every row and column.

No timing is checked: only that the data is made, every contender runs, and the table and
report hold what the issue asks for.
"""

from __future__ import annotations

import importlib.util
import os
import tarfile
from pathlib import Path

import pytest

from benchmarks import data, report, run
from benchmarks.common import TOOLS_DIR
from layerdiff.archive import apply
from tests.support.containerd import available

ROOT = os.geteuid() == 0
APPLY_CONTENDERS = {
    "tar": ["floor: cat", "GNU tar"],
    "tar.gz": ["floor: gzip", "floor: pigz", "GNU tar (gzip)", "GNU tar (pigz)"],
    "tar.zst": ["floor: zstd", "GNU tar (zstd)"],
}
DIFF_CONTENDERS = [f"layerdiff {how} {path}" for path in ("double walk", "overlay fast path")
                   for how in ("CLI", "library")]


def test_data_is_reproducible(tmp_path: Path) -> None:
    first = data.prepare(tmp_path / "a", 0.001, "synthetic", lambda _: None)
    second = data.prepare(tmp_path / "b", 0.001, "synthetic", lambda _: None)
    assert list(first) == list(data.DATASETS)
    for name in data.DATASETS:
        for suffix in data.SUFFIXES:
            assert (first[name].blob(suffix).read_bytes()
                    == second[name].blob(suffix).read_bytes()), (name, suffix)
    assert first["delta"].base == "rootfs"
    names = [line for line in _members(first["delta"].blob("tar")) if ".wh." in line]
    assert any(n.endswith("/.wh..wh..opq") for n in names)
    assert len(names) >= 2  # an opaque directory and at least one whiteout


def _members(tar: Path) -> list[str]:
    with tarfile.open(tar) as archive:
        return archive.getnames()


def test_runner_reports_every_row_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not ROOT and not (TOOLS_DIR / "root/usr/bin/pigz").exists():
        pytest.skip("pigz is fetched by .ci/fetch-bench-tools, which needs root")
    containerd = ROOT and available()
    output = tmp_path / "benchmarks.md"
    argv = ["--cache", str(tmp_path / "cache"), "--scale", "0.001", "--rootfs", "synthetic",
            "--runs", "1", "--output", str(output)]
    if not containerd:
        argv.append("--no-containerd")
    assert run.main(argv) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert all(column in header for column in report.COLUMNS)
    written = output.read_text()
    for heading in ("## Machine", "## Tools", "## What each contender does", "## Results",
                    "## Targets"):
        assert heading in written
    table = [[cell.strip() for cell in line.strip("|").split("|")]
             for line in written.splitlines() if line.startswith("| ")]
    assert table[0] == list(report.COLUMNS)
    assert all(len(row) == len(report.COLUMNS) for row in table)
    expected = set()
    for name in data.DATASETS:
        for suffix, contenders in APPLY_CONTENDERS.items():
            names = [*contenders, "layerdiff CLI", "layerdiff library"]
            names += ["containerd 1.7"] if containerd else []
            expected |= {(name, suffix, contender) for contender in names}
    if ROOT:  # the diff benchmark mounts an overlay
        for suffix in run.DIFF_SUFFIXES:
            names = [*DIFF_CONTENDERS, *(["containerd 1.7"] if containerd else [])]
            expected |= {("rootfs+delta", f"diff to {suffix}", n) for n in names}
    assert {tuple(row[:3]) for row in table[1:]} == expected
    assert len(table) == len(expected) + 1


def test_the_cli_is_measured_with_its_bytecode_written() -> None:
    cached = Path(importlib.util.cache_from_source(apply.__file__))
    cached.unlink(missing_ok=True)
    run.byte_compile_layerdiff()
    assert cached.is_file()
