"""The pipeline's threads: the hash thread's digest, and no thread left behind."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from layerdiff import apply_layer
from layerdiff.errors import CorruptLayerError
from layerdiff.pipeline import ThreadedHash
from tests.support.layers import gzip, layer


def _pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name in ("layerdiff-hash", "layerdiff-decode")]


@pytest.mark.parametrize("inline_bytes", [0, 100_000, 1 << 30])
def test_the_threaded_hash_is_sha256_of_every_chunk_in_order(inline_bytes: int) -> None:
    chunks = [os.urandom(n) for n in (0, 1, 4096, 1 << 20, 3, 70_000)] * 5
    hasher = ThreadedHash(inline_bytes)
    for chunk in chunks:
        hasher.update(chunk)
    assert hasher.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    hasher.update(b"ignored once closed")  # neither blocks nor changes the digest
    hasher.close()
    assert _pipeline_threads() == []


def test_an_apply_leaves_no_pipeline_thread(tmp_path: Path) -> None:
    # Past the bytes hashed inline: the hash thread starts.
    blob = gzip(layer(("file", "big", {"data": os.urandom(24 << 20)})))
    for name in ("ok", "bad"):
        (tmp_path / name).mkdir()
    apply_layer(io.BytesIO(blob), tmp_path / "ok")
    assert _pipeline_threads() == []
    with pytest.raises(CorruptLayerError):  # the pipeline ends early, on an error
        apply_layer(io.BytesIO(blob[: len(blob) // 2]), tmp_path / "bad")
    assert _pipeline_threads() == []
