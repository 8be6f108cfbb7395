"""The examples in the README and docs/ run, and print what they say they print."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def _blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for lang, body in _FENCE.findall(doc.read_text()):
            if lang == language:
                found.append((doc.name, body))
    return found


@pytest.mark.parametrize(("doc", "code"), _blocks("python"))
def test_python_examples_run(doc: str, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    exec(compile(code, doc, "exec"), {"__name__": "__doc_example__"})


@pytest.mark.parametrize(("doc", "session"), _blocks("console"))
def test_console_examples_print_what_they_show(doc: str, session: str, tmp_path: Path) -> None:
    lines = session.splitlines()
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    i = 0
    while i < len(lines):
        assert lines[i].startswith("$ "), f"{doc}: expected a command, got {lines[i]!r}"
        command = lines[i][2:]
        for scratch in ("/tmp/rootfs", "/tmp/store"):  # each example gets its own
            command = command.replace(scratch, str(tmp_path / scratch[len("/tmp/") :]))
        expected = []
        i += 1
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        (tmp_path / "rootfs").mkdir(exist_ok=True)
        result = subprocess.run(
            shlex.split(command), cwd=REPO, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == expected
