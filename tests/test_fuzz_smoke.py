"""A bounded run of every fuzz target (``tests/fuzz``), as CI does on each change.

Each target runs for a fixed number of inputs from its seed corpus, in a subprocess
under libFuzzer, and must end cleanly; docs/reliability.md tells how to run them for
hours. Without atheris the runs are skipped (and fail in CI, which installs it). The
apply target's sandbox is tested here too: a fuzzer that cannot see an escape finds none.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz import TARGETS, Finding
from tests.fuzz.fuzz_apply import Sandbox, Setting, check_apply
from tests.fuzz.seeds import write_seeds
from tests.support import tarbuild

REPO = Path(__file__).resolve().parent.parent

#: Inputs per target: a few seconds each, seeds included.
RUNS = 2000

#: A run that takes longer than this hangs (2000 applies take ~5 s).
RUN_SECONDS = 300


def _require_atheris() -> None:
    if importlib.util.find_spec("atheris") is None:
        message = "atheris is not installed (pip install 'atheris>=2.3,<4')"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI installs the test extras: its absence is a broken setup
        pytest.skip(message)


@pytest.mark.parametrize("target", TARGETS)
def test_bounded_fuzz_run_finds_nothing(target: str, tmp_path: Path) -> None:
    _require_atheris()
    corpus = tmp_path / "corpus"
    write_seeds(corpus, target)
    command = [sys.executable, "-m", "tests.fuzz", target, f"-runs={RUNS}", "-seed=1",
               "-timeout=30", f"-artifact_prefix={tmp_path}/", str(corpus)]
    # The apply target's sandbox goes where pytest cleans up.
    env = {**os.environ, "LAYERDIFF_FUZZ_TMPDIR": str(tmp_path)}
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=RUN_SECONDS, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"Done {RUNS} runs" in run.stderr


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(str(tmp_path))


def test_sandbox_sees_a_write_outside(sandbox: Sandbox) -> None:
    (sandbox.root.parent / "outside" / "file").write_bytes(b"changed")
    with pytest.raises(Finding, match="outside/file"):
        sandbox.verify_and_reset()


def test_sandbox_sees_a_new_file_beside_the_target(sandbox: Sandbox) -> None:
    (sandbox.root.parent / "new").write_bytes(b"")
    with pytest.raises(Finding, match="new"):
        sandbox.verify_and_reset()


def test_sandbox_empties_the_target_between_inputs(sandbox: Sandbox) -> None:
    layer = tarbuild.layer(tarbuild.dir_("d"), tarbuild.reg("d/f", b"f"),
                           tarbuild.dir_(".", mode=0o700))
    for setting in (Setting(), Setting(gzip=True, base_tree=True)):
        check_apply(sandbox, layer, setting)
        assert list(sandbox.root.iterdir()) == []
        assert sandbox.root.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("byte", range(64))
def test_setting_byte_round_trips(byte: int) -> None:
    setting = Setting.decode(byte)
    assert Setting.decode(setting.encode()) == setting
