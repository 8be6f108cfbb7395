"""The progress display, seen in a real terminal (tmux), and its absence elsewhere.

Nothing here depends on timing beyond bounded waits: the layer passes through a stream
processor that copies 64 KiB and then waits on a FIFO the test opens when it has seen the
progress line. Until then the command is stuck partway through a blob of known size, so
the line must show a percentage and a rate.
"""

from __future__ import annotations

import gzip as _gzip
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import images
from tests.support.layers import layer

GATED = "application/vnd.oci.image.layer.v1.tar+gzip+gated"
WAIT_SECONDS = 30.0
#: "  6%  1.0 MiB/8.0 MiB  12.3 MiB/s": a percentage, then a rate.
PROGRESS = re.compile(r"\d+%\s+\S+ \S*B/\S+ \S*B\s+\S+ \S*B/s")

PROCESSOR = """\
import sys
data = sys.stdin.buffer.read(1 << 16)
sys.stdout.buffer.write(data)
sys.stdout.buffer.flush()
with open(sys.argv[1], "rb") as gate:  # blocks until the test opens the FIFO
    gate.read()
while chunk := sys.stdin.buffer.read(1 << 16):
    sys.stdout.buffer.write(chunk)
"""


class Terminal:
    """A command running in a detached 120x30 tmux session on a private server."""

    def __init__(self, socket: Path, command: str) -> None:
        self._tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
        # The shell stays after the command, so that its screen can still be read.
        script = f"{command}; echo EXIT=$?; sleep {int(WAIT_SECONDS) * 4}"
        subprocess.run(
            [*self._tmux, "new-session", "-d", "-x", "120", "-y", "30", "sh", "-c", script],
            check=True,
        )

    def screen(self) -> list[str]:
        """The visible lines of the pane."""
        result = subprocess.run(
            [*self._tmux, "capture-pane", "-p"], check=True, capture_output=True, text=True
        )
        return result.stdout.splitlines()

    def wait_for(self, pattern: re.Pattern[str]) -> list[str]:
        """The screen once a line matches ``pattern``; fails after ``WAIT_SECONDS``."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            lines = self.screen()
            if any(pattern.search(line) for line in lines):
                return lines
            if time.monotonic() > deadline:
                pytest.fail(f"no line matching {pattern.pattern!r} on the screen: {lines}")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the session and its server."""
        subprocess.run([*self._tmux, "kill-server"], check=False, capture_output=True)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path`` with a gated processor config, its gate FIFO and a big layer blob."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    (tmp_path / "gated.py").write_text(PROCESSOR)
    os.mkfifo(tmp_path / "gate")
    (tmp_path / "processors.toml").write_text(
        f'[stream_processors.gated]\naccepts = ["{GATED}"]\n'
        'returns = "application/vnd.oci.image.layer.v1.tar+gzip"\n'
        f"path = {json.dumps(sys.executable)}\n"
        f"args = [{json.dumps(str(tmp_path / 'gated.py'))}, {json.dumps(str(tmp_path / 'gate'))}]\n"
    )
    # Random bytes do not compress: the blob is as big as its content.
    blob = _gzip.compress(layer(("file", "big", {"data": os.urandom(8 << 20)})), 1, mtime=0)
    (tmp_path / "layer.bin").write_bytes(blob)
    yield tmp_path


def _layerdiff(*args: str | Path) -> str:
    return " ".join([sys.executable, "-m", "layerdiff", *(str(a) for a in args)])


def _watch(terminal: Terminal, gate: Path) -> tuple[list[str], list[str]]:
    """The screen while the command waits on the gate, and the screen after it ended."""
    try:
        during = terminal.wait_for(PROGRESS)
        with open(gate, "wb"):
            pass  # the processor's read of the gate ends: it copies the rest
        after = terminal.wait_for(re.compile(r"^EXIT=\d+$"))
    finally:
        terminal.close()
    return during, after


def test_apply_shows_progress_on_a_terminal(setup: Path) -> None:
    (setup / "dest").mkdir()
    command = _layerdiff(
        "apply", "--config", setup / "processors.toml", "--media-type", GATED,
        setup / "layer.bin", setup / "dest",
    )
    during, after = _watch(Terminal(setup / "tmux.sock", command), setup / "gate")
    line = next(line for line in during if PROGRESS.search(line))
    assert line.startswith("apply layer.bin ")
    assert len(line) <= 120
    assert "EXIT=0" in after
    # The progress line is gone: the descriptor took its place.
    assert not any(PROGRESS.search(line) for line in after), after
    assert after[0].startswith("sha256:")
    assert after[0].endswith("application/vnd.oci.image.layer.v1.tar")
    assert (setup / "dest/big").stat().st_size == 8 << 20


def test_unpack_shows_progress_per_layer(setup: Path) -> None:
    image = images.make_image([(setup / "layer.bin").read_bytes()], layer_media_type=GATED)
    layout = images.write_dir(images.layout_files([image]), setup / "layout")
    command = _layerdiff(
        "unpack", "--config", setup / "processors.toml", layout, setup / "rootfs",
    )
    during, after = _watch(Terminal(setup / "tmux.sock", command), setup / "gate")
    line = next(line for line in during if PROGRESS.search(line))
    assert line.startswith(f"layer 1/1 {image.layers[0].digest[:19]}")
    assert "EXIT=0" in after
    assert not any(PROGRESS.search(line) for line in after), after
    assert after[0].startswith(image.config_digest)


def test_no_progress_without_a_terminal(setup: Path) -> None:
    (setup / "dest").mkdir()
    blob = setup / "plain.tar.gz"
    blob.write_bytes(_gzip.compress(layer(("file", "f", {"data": b"x" * 4096}))))
    result = subprocess.run(
        [sys.executable, "-m", "layerdiff", "apply", str(blob), str(setup / "dest")],
        capture_output=True, check=False,
    )
    assert result.returncode == 0
    assert result.stderr == b""
    verbose = subprocess.run(
        [sys.executable, "-m", "layerdiff", "-v", "apply", str(blob), str(setup / "dest2")],
        capture_output=True, check=False,
    )
    assert verbose.returncode == 1  # no dest2: the failed task logs no closing line
    assert verbose.stderr.decode().splitlines() == [
        f"layerdiff: error: target directory {str(setup / 'dest2')!r} does not exist"
    ]
    (setup / "dest2").mkdir()
    verbose = subprocess.run(
        [sys.executable, "-m", "layerdiff", "-v", "apply", str(blob), str(setup / "dest2")],
        capture_output=True, check=False,
    )
    lines = verbose.stderr.decode().splitlines()
    assert any(re.match(r"layerdiff: INFO: apply plain.tar.gz  100%.*: done$", line)
               for line in lines), lines
    assert "\r" not in verbose.stderr.decode()


def test_inspect_shows_progress_on_a_terminal(setup: Path) -> None:
    command = _layerdiff(
        "inspect", "--config", setup / "processors.toml", "--media-type", GATED,
        setup / "layer.bin",
    )
    during, after = _watch(Terminal(setup / "tmux.sock", command), setup / "gate")
    line = next(line for line in during if PROGRESS.search(line))
    assert line.startswith("inspect layer.bin ")
    assert "EXIT=0" in after
    assert not any(PROGRESS.search(line) for line in after), after
    assert after[0] == f"LAYER     {setup / 'layer.bin'}"
