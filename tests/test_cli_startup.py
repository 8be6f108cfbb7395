"""The command line's start-up: each command imports what it uses, nothing more."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from layerdiff.cli import COMMANDS, build_parser, main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hello-layer.tar.gz"

#: Packages that ``apply`` and ``diff`` must not import: the gRPC server and its
#: protobufs, the metrics, the registry client and the image code; the configuration
#: file's reader without ``--config``.
HEAVY = (
    "tomllib",
    "layerdiff.config",
    "grpc",
    "google.protobuf",
    "prometheus_client",
    "layerdiff.api",
    "layerdiff.server",
    "layerdiff.daemon",
    "layerdiff.registry",
    "layerdiff.image",
    "layerdiff.cli.serve_cmd",
)

#: Runs ``layerdiff ARGS`` in a fresh interpreter; prints the exit code and the heavy
#: modules it imported, as JSON on the last line.
PROBE = """
import json, sys
from layerdiff.cli import main
heavy = tuple(sys.argv[1].split(","))
code = main(sys.argv[2:])
found = sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + "." for h in heavy)))
print(json.dumps([code, found]))
"""


def probe(*args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY), *args],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert done.stdout, done.stderr
    code, found = json.loads(done.stdout.splitlines()[-1])
    return code, found


def test_apply_imports_no_grpc_registry_or_image_code(tmp_path: Path) -> None:
    code, found = probe("apply", str(EXAMPLE), str(tmp_path))
    assert code == 0
    assert any(tmp_path.iterdir())
    assert found == []


def test_diff_imports_no_grpc_registry_or_image_code(tmp_path: Path) -> None:
    (tmp_path / "lower").mkdir()
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "file").write_text("hi\n")
    code, found = probe("diff", "--compression", "none", str(tmp_path / "lower"),
                        str(tmp_path / "upper"), "-o", str(tmp_path / "layer.tar"))
    assert code == 0
    assert found == []


def test_help_lists_every_command_without_importing_them() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom layerdiff.cli import main\n"
         "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
         "print(sorted(m for m in sys.modules if m.endswith('_cmd')))"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    for name in COMMANDS:
        assert f"    {name} " in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


def test_the_listed_help_is_each_commands_own() -> None:
    parser = build_parser()
    commands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    own = {choice.dest: choice.help for choice in commands._get_subactions()}
    assert own == {name: help_text for name, (_, help_text) in COMMANDS.items()}


@pytest.mark.parametrize("argv", [["-v", "apply", "--help"], ["--verbose", "apply", "-h"]])
def test_options_before_the_command_still_pick_it(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert "usage: layerdiff apply" in capsys.readouterr().out
