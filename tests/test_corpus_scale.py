"""Hostile by size: millions of tiny entries, long hardlink chains, trees thousands deep.

Each layer is generated while it is read, never held. The CI runs 200,000 entries;
the documented long run sets ``LAYERDIFF_SCALE_ENTRIES=2000000`` (docs/reliability.md).
Targets are a private tmpfs when running as root (file creation on these VMs' ext4 is
erratic, and unmounting is the cleanup), else the test's temporary directory.

Memory is measured in a child process (its peak RSS, before and after the big apply):
the stream must not be held; what grows is the set of paths the layer unpacked, which
opaque markers need (containerd's ``unpackedPaths``), about a hundred bytes an entry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from layerdiff import apply_layer
from tests.support import corpus
from tests.support.tarbuild import (
    StreamedLayer,
    dir_,
    hardlink,
    layer,
    reg,
    tiny_files,
    whiteout,
)

REPO = Path(__file__).resolve().parent.parent

#: Tiny entries in the scale test (files; their directories come on top).
ENTRIES = int(os.environ.get("LAYERDIFF_SCALE_ENTRIES", "200000"))
PER_DIR = 1000
#: Bound on the child's run (a hang fails, a slow machine does not): 200k entries take
#: about 5 s on a tmpfs here.
CHILD_SECONDS = max(300, ENTRIES // 500)
#: Peak RSS growth allowed: a constant, plus the unpacked-path set's share per entry.
RSS_BASE_MIB = 32
RSS_BYTES_PER_ENTRY = 200

HARDLINKS = 10_000
DEPTH = 2000  # "d/" * 2000 is 4000 bytes: within PATH_MAX, past Python's recursion limit


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """An empty directory for big trees: a private tmpfs as root, else ``tmp_path``."""
    target = tmp_path / "scratch"
    target.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8g,nr_inodes=0,mode=0755", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    ).returncode == 0
    try:
        yield target
    finally:
        if mounted:
            subprocess.run(["umount", str(target)], check=True)
        else:
            # rm(1) removes deep trees without recursing (pytest's cleanup recurses).
            subprocess.run(["rm", "-rf", str(target)], check=True)


_CHILD = """
import json, os, resource, sys
from layerdiff import apply_layer
from tests.support.tarbuild import StreamedLayer, tiny_files
target, entries, per_dir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
warm = os.path.join(target, "warm")
os.mkdir(warm)
apply_layer(StreamedLayer(tiny_files(2 * per_dir, per_dir)), warm)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
big = os.path.join(target, "big")
os.mkdir(big)
desc = apply_layer(StreamedLayer(tiny_files(entries, per_dir)), big)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grown_kib": after - before, "size": desc.size}))
"""


def test_millions_of_tiny_entries_apply_in_bounded_memory(scratch: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(scratch), str(ENTRIES), str(PER_DIR)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=CHILD_SECONDS, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    dirs = -(-ENTRIES // PER_DIR)
    assert result["size"] == (dirs + ENTRIES) * 512 + 1024  # headers, then the end
    grown_mib = result["grown_kib"] / 1024
    bound_mib = RSS_BASE_MIB + RSS_BYTES_PER_ENTRY * ENTRIES / (1 << 20)
    assert grown_mib < bound_mib, f"peak RSS grew {grown_mib:.0f} MiB for {ENTRIES} entries"
    big = scratch / "big"
    assert sorted(os.listdir(big)) == sorted(f"d{d}" for d in range(dirs))
    for d in range(dirs):
        expected = {f"f{i}" for i in range(d * PER_DIR, min(ENTRIES, (d + 1) * PER_DIR))}
        assert set(os.listdir(big / f"d{d}")) == expected, f"d{d} is incomplete"


def test_a_hardlink_chain_of_thousands(scratch: Path) -> None:
    chain = [hardlink(f"h{i}", f"h{i - 1}" if i else "f") for i in range(HARDLINKS)]
    apply_layer(cast(BinaryIO, StreamedLayer([reg("f", b"shared"), *chain])), scratch)
    first = os.lstat(scratch / "f")
    assert first.st_nlink == HARDLINKS + 1
    last = os.lstat(scratch / f"h{HARDLINKS - 1}")
    assert (last.st_dev, last.st_ino) == (first.st_dev, first.st_ino)


def _deep_chain() -> Iterator[bytes]:
    for level in range(1, DEPTH + 1):
        yield dir_("/".join(["d"] * level), mtime=level)
    yield reg("/".join(["d"] * DEPTH) + "/bottom", b"deep")


def test_a_directory_chain_thousands_deep_is_made_and_whited_out(scratch: Path) -> None:
    apply_layer(cast(BinaryIO, StreamedLayer(_deep_chain())), scratch)
    # Walk down with directory fds (a path from the top would pass PATH_MAX with it).
    fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(1, DEPTH + 1):
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            assert os.fstat(fd).st_mtime == level  # deferred times reached every level
        bottom = os.open("bottom", os.O_RDONLY, dir_fd=fd)
        assert os.read(bottom, 10) == b"deep"
        os.close(bottom)
    finally:
        os.close(fd)

    # A whiteout removes the whole chain: the removal walks it in a loop.
    apply_layer(cast(BinaryIO, StreamedLayer([whiteout("d")])), scratch)
    assert os.listdir(scratch) == []


# -- the documentation keeps up with the corpus -------------------------------------------


def test_every_hostile_case_is_listed_in_reliability_doc() -> None:
    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    section = re.search(r"^## Adversarial corpus$(.*?)^## ", doc, re.MULTILINE | re.DOTALL)
    assert section is not None, "docs/reliability.md has no '## Adversarial corpus' section"
    listed = section.group(1)
    missing = [
        case.name
        for case in corpus.CASES
        if case.kind == "hostile" and f"`{case.name}`" not in listed
    ]
    assert missing == [], f"hostile cases missing from docs/reliability.md: {missing}"


def test_layer_helper_streams_what_layer_builds() -> None:
    # StreamedLayer is the streaming twin of layer(): same bytes, read in pieces.
    entries = [dir_("a"), reg("a/f", b"f" * 700), *tiny_files(5, 2)]
    stream = StreamedLayer(entries)
    assert b"".join(iter(lambda: stream.read(333), b"")) == layer(*entries)
