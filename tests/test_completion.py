"""``layerdiff completion``: scripts generated from the parser, accepted by the shells."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from layerdiff.cli import build_parser
from layerdiff.cli.completion_cmd import walk


def _script(shell: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "layerdiff", "completion", shell],
        capture_output=True, text=True, check=True,
    )
    return result.stdout


def _complete(script: Path, line: str) -> list[str]:
    """What bash offers for the last word of ``line`` (a trailing space: a new word)."""
    words = line.split(" ")
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        '_layerdiff\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "layerdiff.bash"
    path.write_text(_script("bash"))
    return path


def test_bash_accepts_the_script(bash_script: Path) -> None:
    subprocess.run(["bash", "-n", str(bash_script)], check=True)
    result = subprocess.run(
        ["bash", "-c", f"source {bash_script} && complete -p layerdiff"],
        capture_output=True, text=True, check=True,
    )
    assert result.stdout.strip().endswith("-F _layerdiff layerdiff")


@pytest.mark.parametrize(
    ("line", "offered"),
    [
        ("layerdiff ", ["apply", "diff", "content", "unpack", "inspect", "serve", "completion"]),
        ("layerdiff in", ["inspect"]),
        ("layerdiff content l", ["ls", "label"]),
        ("layerdiff apply --mo", ["--mount", "--mounts-json", "--mode"]),
        ("layerdiff apply --mode ", ["naive", "overlay", "aufs"]),
        ("layerdiff diff --compression z", ["zstd"]),
        ("layerdiff --verbose unpack --mode s", ["snapshots"]),
        ("layerdiff inspect --top ", []),  # a number: nothing to offer
        ("layerdiff content --store x ls --j", ["--json"]),
    ],
)
def test_bash_completes_commands_options_and_choices(
    bash_script: Path, line: str, offered: list[str]
) -> None:
    assert _complete(bash_script, line) == offered


def test_bash_completes_file_names_for_paths(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "layer.tar.gz").write_bytes(b"")
    assert _complete(bash_script, f"layerdiff apply --config {tmp_path}/lay") == [
        f"{tmp_path}/layer.tar.gz"
    ]
    assert _complete(bash_script, f"layerdiff inspect {tmp_path}/lay") == [
        f"{tmp_path}/layer.tar.gz"
    ]


def test_every_command_and_option_is_in_every_script() -> None:
    commands = walk(build_parser())
    scripts = {shell: _script(shell) for shell in ("bash", "zsh", "fish")}
    for command in commands:
        for name in command.subcommands:
            assert all(name in script for script in scripts.values())
        for option in command.options:
            flag = option.flags[-1]
            assert flag in scripts["bash"] and flag in scripts["zsh"]
            assert flag.lstrip("-") in scripts["fish"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_accept_their_scripts(shell: str, tmp_path: Path) -> None:
    # .ci/fetch-shells fetches both privately; LAYERDIFF_SHELLS_BIN names its folder.
    program = shutil.which(shell, path=os.environ.get("LAYERDIFF_SHELLS_BIN")) or shutil.which(
        shell
    )
    if program is None:
        pytest.skip(f"{shell} is not installed (.ci/fetch-shells fetches it)")
    path = tmp_path / f"layerdiff.{shell}"
    path.write_text(_script(shell))
    subprocess.run([program, "-n", str(path)], check=True)
    # The check can fail: the same shell refuses a script with a syntax error.
    broken = tmp_path / f"broken.{shell}"
    broken.write_text(_script(shell) + "\nif (\n")
    refused = subprocess.run([program, "-n", str(broken)], capture_output=True, check=False)
    assert refused.returncode != 0


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "layerdiff", "completion", "tcsh"],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "invalid choice: 'tcsh'" in result.stderr
