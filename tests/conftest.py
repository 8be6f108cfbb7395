"""Fixtures shared by the tests: the real containerd daemon used as an oracle."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import containerd as ctrd


@pytest.fixture(scope="session")
def containerd() -> Iterator[ctrd.Containerd]:
    """A private containerd 1.7 daemon for the whole session."""
    if os.geteuid() != 0:
        pytest.skip("containerd needs root (mounts, chown, devices)")
    if not ctrd.available():
        message = f"containerd binaries not found in {ctrd.binary_dir()}: run .ci/fetch-containerd"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with ctrd.Containerd() as daemon:
        yield daemon
