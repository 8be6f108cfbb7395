"""Fixtures shared by the tests: the real containerd daemon used as an oracle."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import containerd as ctrd


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
