"""An unpack killed with SIGKILL in the middle of a layer, run again, gives the tree an
uninterrupted unpack gives, in both modes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerdiff.image import open_image, unpack_image
from tests.support import images
from tests.support.compat_cases import entry_names, unlisted_dirs, whiteouts
from tests.support.layers import gzip, layer
from tests.support.tree import diff_trees, snapshot_tree

REPO = Path(__file__).resolve().parent.parent
FILLER = [("file", f"fill/{i:04d}", {"data": os.urandom(4096)}) for i in range(600)]
BASE = layer(
    ("dir", "etc/"),
    ("file", "etc/passwd", {"data": b"root:x:0:0\n"}),
    ("dir", "d/"),
    ("file", "d/a", {"data": b"a"}),
    ("dir", "fill/"),
)
# Applied again over itself, this layer gives the same tree: it is re-applied.
SAFE = layer(
    ("file", "etc/.wh.passwd"),
    ("dir", "d/"),
    ("file", "d/.wh..wh..opq"),
    ("file", "d/b", {"data": b"b"}),
    *FILLER,
    ("file", "last", {"data": b"l"}),
)
# This one links to a lower file, then replaces it: a second pass would link to the new
# file, so the unpack must start over.
UNSAFE = layer(
    ("hardlink", "etc/old-passwd", {"linkname": "etc/passwd"}),
    ("file", "etc/passwd", {"data": b"new\n"}),
    *FILLER,
)
TOP = layer(("file", "top", {"data": b"t"}))
#: Directories the middle layers change without listing them: their times are the unpack's.
UNPACK_TIMES = ["etc", "fill"]

# Runs an unpack whose layer KILL_AT kills the process with SIGKILL once most of its
# blob was read: a real kill, at a point that does not depend on timing.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from layerdiff.image import open_image, unpack_image

    image, dest, mode, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    class Killing:
        def __init__(self, stream, limit):
            self.stream, self.limit, self.read_so_far = stream, limit, 0
        def read(self, size=-1):
            if self.read_so_far > self.limit:
                os.kill(os.getpid(), signal.SIGKILL)
            data = self.stream.read(min(size, 16384) if size > 0 else 16384)
            self.read_so_far += len(data)
            return data
        def close(self):
            self.stream.close()

    source = open_image(image)
    opener = source.open_layer
    def open_layer(layer):
        stream = opener(layer)
        return Killing(stream, layer.size * 2 // 3) if layer.index == kill_at else stream
    source.open_layer = open_layer
    unpack_image(source, dest, mode=mode)
""")


def _killed_unpack(image: str, dest: Path, mode: str, kill_at: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, image, str(dest), mode, str(kill_at)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


def _unpack(image: str, dest: Path, mode: str) -> int:
    source = open_image(image)
    try:
        return unpack_image(source, dest, mode=mode).resumed
    finally:
        source.close()


def _journal(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize(("middle", "resumed"), [(SAFE, 1), (UNSAFE, 0)], ids=["safe", "unsafe"])
def test_flat_unpack_killed_mid_layer_finishes_correctly(
    tmp_path: Path, middle: bytes, resumed: int
) -> None:
    layers = [gzip(BASE), gzip(middle), TOP]
    image = images.all_forms(images.make_image(layers), tmp_path)["oci-archive"]
    _unpack(image, tmp_path / "fresh", "flat")

    _killed_unpack(image, tmp_path / "out", "flat", kill_at=1)
    journal = _journal(tmp_path / ".out.layerdiff-unpack.json")
    assert (journal["done"], journal["applying"]) == (1, 1)
    assert (tmp_path / "out/fill").exists()  # the layer was partly applied
    assert not (tmp_path / "out/last").exists()

    assert _unpack(image, tmp_path / "out", "flat") == resumed
    # etc and fill change in layer 1 without an entry there: they keep the unpack's time.
    problems = diff_trees(snapshot_tree(tmp_path / "fresh"), snapshot_tree(tmp_path / "out"),
                          ignore_mtime=UNPACK_TIMES)
    assert problems == [], "\n".join(problems)
    if middle is UNSAFE:  # the link kept the old file, as in one uninterrupted pass
        assert (tmp_path / "out/etc/old-passwd").read_bytes() == b"root:x:0:0\n"


@pytest.mark.root
def test_snapshots_unpack_killed_mid_layer_finishes_correctly(tmp_path: Path) -> None:
    images.skip_unless_root()
    layers = [gzip(BASE), gzip(SAFE), TOP]
    image = images.all_forms(images.make_image(layers), tmp_path)["docker-save"]
    _unpack(image, tmp_path / "fresh", "snapshots")

    _killed_unpack(image, tmp_path / "out", "snapshots", kill_at=1)
    assert sorted(os.listdir(tmp_path / "out")) == [".tmp-2", "1", "layerdiff-unpack.json"]
    assert _journal(tmp_path / "out/layerdiff-unpack.json")["done"] == 1

    assert _unpack(image, tmp_path / "out", "snapshots") == 1
    assert sorted(os.listdir(tmp_path / "out")) == [
        "1", "2", "3", "layerdiff-unpack.json", "upper", "work"
    ]
    for i, name in enumerate(("1", "2", "3")):
        fresh = snapshot_tree(tmp_path / "fresh" / name)
        out = snapshot_tree(tmp_path / "out" / name)
        # As in test_containerd_compat: directories a layer implies and whiteouts get the
        # time of the unpack.
        unpacked_at = unlisted_dirs(fresh, entry_names(layers[i])) + whiteouts(fresh)
        problems = diff_trees(fresh, out, ignore_mtime=unpacked_at)
        assert problems == [], f"layer {name}:\n" + "\n".join(problems)


@pytest.fixture
def out_removed(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/out``, removed by rm(1) afterwards: pytest's own cleanup recurses, and
    a deep tree left by a failure would break every later session's cleanup."""
    yield tmp_path / "out"
    subprocess.run(["rm", "-rf", str(tmp_path / "out")], check=True)


def test_a_restarted_flat_unpack_removes_a_tree_of_any_depth(
    tmp_path: Path, out_removed: Path
) -> None:
    layers = [gzip(BASE), gzip(UNSAFE), TOP]
    image = images.all_forms(images.make_image(layers), tmp_path)["oci-archive"]
    _unpack(image, tmp_path / "fresh", "flat")
    _killed_unpack(image, tmp_path / "out", "flat", kill_at=1)
    # As a layer may leave it: deeper than Python 3.11's rmtree (or makedirs) can recurse.
    fd = os.open(tmp_path / "out", os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1500):
        os.mkdir("b", dir_fd=fd)
        below = os.open("b", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
    os.close(fd)

    assert _unpack(image, tmp_path / "out", "flat") == 0  # started over: DEST emptied
    problems = diff_trees(snapshot_tree(tmp_path / "fresh"), snapshot_tree(tmp_path / "out"),
                          ignore_mtime=UNPACK_TIMES)
    assert problems == [], "\n".join(problems)
