"""Configured limits: a layer past one is refused with LimitExceededError, nothing escapes."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from layerdiff import ApplyOptions, apply_layer
from layerdiff.config import parse_config
from layerdiff.diff import ApplyLimits
from layerdiff.errors import InvalidArgumentError, LimitExceededError
from tests.support.layers import gzip, layer


def apply_with(blob: bytes, dest: Path, **limits: Any) -> None:
    apply_layer(io.BytesIO(blob), dest, ApplyOptions(limits=ApplyLimits(**limits)))


def test_a_tar_bomb_stops_at_the_byte_limit(tmp_path: Path) -> None:
    bomb = gzip(layer(("file", "zeros", {"data": bytes(64 << 20)})))
    assert len(bomb) < 200_000  # small blob, 64 MiB of tar
    with pytest.raises(LimitExceededError, match="larger than the limit of 1048576"):
        apply_with(bomb, tmp_path, max_layer_bytes=1 << 20)
    assert (tmp_path / "zeros").stat().st_size <= 2 << 20


def test_entries_past_the_limit_are_refused(tmp_path: Path) -> None:
    blob = layer(*(("file", f"f{i}", {"data": b"x"}) for i in range(20)))
    with pytest.raises(LimitExceededError, match="more than 10 entries"):
        apply_with(blob, tmp_path, max_entries=10)
    (tmp_path / "ok").mkdir()
    apply_with(blob, tmp_path / "ok", max_entries=20)


class _EndlessLayer(io.RawIOBase):
    """A gzip stream that never ends: tar entries forever, or (``trailing``) an end of
    archive followed by zeros forever."""

    def __init__(self, trailing: bool = False) -> None:
        self._chunks = self._zeros() if trailing else self._entries()
        self._buf = b""

    @staticmethod
    def _entries() -> Iterator[bytes]:
        compressor = zlib.compressobj(wbits=31)
        for i in range(10**9):
            info = tarfile.TarInfo(f"f{i}")
            info.size = 100
            yield compressor.compress(info.tobuf(tarfile.PAX_FORMAT) + b"y" * 100 + bytes(412))
        yield compressor.flush()

    @staticmethod
    def _zeros() -> Iterator[bytes]:
        compressor = zlib.compressobj(wbits=31)
        yield compressor.compress(bytes(1024))  # the end of the archive, then more
        while True:
            yield compressor.compress(bytes(1 << 20))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            self._buf = next(self._chunks)
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def test_a_layer_that_never_ends_is_stopped(tmp_path: Path) -> None:
    endless = io.BufferedReader(_EndlessLayer())
    with pytest.raises(LimitExceededError, match="more than 5000 entries"):
        apply_layer(endless, tmp_path, ApplyOptions(limits=ApplyLimits(max_entries=5000)))
    # The diffID covers what follows the end of the archive, so that is read too: the
    # byte limit is what stops a stream that goes on after it.
    trailing = io.BufferedReader(_EndlessLayer(trailing=True))
    with pytest.raises(LimitExceededError, match="larger than the limit"):
        apply_layer(trailing, tmp_path, ApplyOptions(limits=ApplyLimits(max_layer_bytes=64 << 20)))


def test_headers_and_xattrs_past_their_limits(tmp_path: Path) -> None:
    big_pax = layer(("file", "f", {"data": b"", "pax_headers": {"comment": "c" * 100_000}}))
    with pytest.raises(LimitExceededError, match=r"header of \d+ bytes exceeds the configured"):
        apply_with(big_pax, tmp_path, max_header_bytes=64 << 10)
    apply_with(big_pax, tmp_path)  # under Go's 1 MiB: accepted by default
    big_xattr = layer(("file", "g", {"data": b"",
                                     "pax_headers": {"SCHILY.xattr.user.big": "v" * 70_000}}))
    with pytest.raises(LimitExceededError, match=r"tar entry 'g': xattr user\.big of 70000"):
        apply_with(big_xattr, tmp_path)


def test_limits_come_from_the_config_file() -> None:
    config = parse_config({"limits": {"max_layer_bytes": 0, "max_entries": 7,
                                      "max_header_bytes": 4096, "max_xattr_bytes": 100}})
    assert config.limits.apply == ApplyLimits(None, 7, 4096, 100)
    for bad in ({"max_entries": -1}, {"max_header_bytes": 0}, {"max_xattr_bytes": "1"},
                {"max_layer_bytes": True}):
        with pytest.raises(InvalidArgumentError, match=r"\[limits\] max_"):
            parse_config({"limits": bad})


def test_the_cli_applies_the_configured_limits(tmp_path: Path) -> None:
    (tmp_path / "limits.toml").write_text("[limits]\nmax_entries = 2\n")
    (tmp_path / "l.tar").write_bytes(layer(*(("file", f"f{i}", {"data": b""}) for i in range(3))))
    dest = tmp_path / "dest"
    dest.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "layerdiff", "apply", "--config", str(tmp_path / "limits.toml"),
         str(tmp_path / "l.tar"), str(dest)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (
        1, "layerdiff: error: the layer has more than 2 entries\n")
