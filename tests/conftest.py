"""Fixtures shared by the tests: the real containerd daemon used as an oracle, and the
``layerdiff`` command run in-process."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from layerdiff import cli
from tests.support import containerd as ctrd
from tests.support.cli import Run


@pytest.fixture(scope="session")
def containerd() -> Iterator[ctrd.Containerd]:
    """A private containerd 1.7 daemon, shared by the whole session."""
    if os.geteuid() != 0:
        pytest.skip("containerd needs root (it mounts, chowns and makes devices)")
    if not ctrd.available():
        message = (
            f"containerd binaries not found in {ctrd.binary_dir()}: run .ci/fetch-containerd "
            "(or point LAYERDIFF_CONTAINERD_BIN at a folder holding containerd and ctr)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI fetches them: their absence is a broken setup
        pytest.skip(message)
    with ctrd.Containerd() as daemon:
        yield daemon


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``layerdiff ARGS...`` in-process: (exit code, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call
