"""containerd 1.7 with ``layerdiff serve`` as its differ, end to end.

A private containerd is configured with ``[proxy_plugins.layerdiff] type = "diff"`` and
layerdiff first in its diff service's order; ``layerdiff serve`` reads and writes blobs
through that containerd's content service. Images are imported, unpacked, run and diffed
with ``ctr``; the snapshots must equal those of a second containerd using its own walking
differ, and layerdiff's log must show that it served the calls.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerdiff import apply_layer
from tests.support import ocilayout
from tests.support.compat_cases import (
    CASES,
    OVERLAY_DEVIATES,
    entry_names,
    unlisted_dirs,
    whiteouts,
)
from tests.support.containerd import Containerd, ContainerdUnpackError, available, binary_dir
from tests.support.containerd_diff import containerd_diff
from tests.support.layers import gzip, layer, zstd
from tests.support.serve import LayerdiffServer
from tests.support.tree import diff_trees, snapshot_tree

pytestmark = [pytest.mark.containerd, pytest.mark.root]

BUSYBOX = binary_dir().parent.parent / "bin" / "busybox"


@dataclass
class Stack:
    daemon: Containerd
    server: LayerdiffServer
    mounts_root: Path


def proxy_config(socket: Path) -> str:
    return f"""
[proxy_plugins.layerdiff]
  type = "diff"
  address = "{socket}"

[plugins."io.containerd.service.v1.diff-service"]
  default = ["layerdiff", "walking"]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if os.geteuid() != 0:
        pytest.skip("containerd needs root")
    if not available():
        message = f"containerd binaries not found in {binary_dir()}: run .ci/fetch-containerd"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    work = tmp_path_factory.mktemp("serve")
    mounts_root = work / "mounts"
    server = LayerdiffServer(work, config=f'[mounts]\ntemp_root = "{mounts_root}"\n')
    with Containerd(extra_config=proxy_config(server.socket), tasks=True) as daemon:
        server.args = ["--containerd-address", f"unix://{daemon.socket}"]
        with server:
            yield Stack(daemon, server, mounts_root)
        assert server.stop() == 0


def served(stack: Stack, method: str) -> list[dict[str, object]]:
    return [r for r in stack.server.records() if r.get("msg") == f"{method} done"]


def no_leftovers(stack: Stack) -> None:
    with open("/proc/self/mountinfo") as info:
        mounted = [line.split()[4] for line in info]
    assert [m for m in mounted if m.startswith(str(stack.mounts_root))] == []
    assert list(stack.mounts_root.iterdir()) == [] if stack.mounts_root.exists() else True


COMPARED = {name: case for name, case in CASES.items() if case[1] != OVERLAY_DEVIATES}


@pytest.mark.parametrize("snapshotter", ["native", "overlayfs"])
@pytest.mark.parametrize("layers", [c[0] for c in COMPARED.values()], ids=list(COMPARED))
def test_unpack_through_layerdiff_equals_containerds_own(
    stack: Stack, containerd: Containerd, layers: list[bytes], snapshotter: str
) -> None:
    before = len(served(stack, "Apply"))
    try:
        theirs = containerd.unpack(layers, snapshotter)
    except ContainerdUnpackError:
        with pytest.raises(ContainerdUnpackError):
            stack.daemon.unpack(layers, snapshotter)
        return
    ours = stack.daemon.unpack(layers, snapshotter)
    assert len(served(stack, "Apply")) - before == len(layers)
    listed: set[str] = set()
    for i, (blob, our_dir, their_dir) in enumerate(zip(layers, ours, theirs, strict=True)):
        listed = listed | entry_names(blob) if snapshotter == "native" else entry_names(blob)
        their_tree, our_tree = snapshot_tree(their_dir), snapshot_tree(our_dir)
        # Both unpacks made these at their own moment: implied directories, whiteouts,
        # and (native) the copies of the parent snapshot's directories.
        unstable = unlisted_dirs(their_tree, listed) + whiteouts(their_tree)
        problems = diff_trees(
            their_tree, our_tree, ignore_mtime=unstable, ignore_atime=True,
            ignore_dir_mtimes=snapshotter == "native" and i > 0,
        )
        assert problems == [], f"layer {i}"
    no_leftovers(stack)


def busybox_image() -> bytes:
    data = BUSYBOX.read_bytes()
    blob = gzip(layer(
        ("dir", "bin/"),
        ("file", "bin/busybox", {"data": data, "mode": 0o755}),
        ("symlink", "bin/cat", {"linkname": "busybox"}),
        ("dir", "data/"),
        ("file", "data/hello.txt", {"data": b"hello from a layerdiff unpack\n"}),
    ))
    return ocilayout.write_oci_archive([ocilayout.layer(blob)], "layerdiff.test/busybox:1")


def test_ctr_run_starts_a_container_unpacked_by_layerdiff(stack: Stack) -> None:
    before = len(served(stack, "Apply"))
    stack.daemon.ctr("images", "import", "--local", "-", stdin=busybox_image())
    assert len(served(stack, "Apply")) == before + 1
    result = stack.daemon.ctr(
        "run", "--rm", "layerdiff.test/busybox:1", "e2e-cat", "/bin/cat", "/data/hello.txt"
    )
    assert result.stdout == "hello from a layerdiff unpack\n"


def test_snapshot_diff_lands_in_containerds_content_store(stack: Stack, tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for tree in (lower, upper):
        (tree / "etc").mkdir(parents=True)
        (tree / "etc/os-release").write_text("ID=test\n")
    (upper / "etc/os-release").write_text("ID=changed\n")
    (upper / "new").write_bytes(os.urandom(4096))
    before = len(served(stack, "Diff"))
    result = containerd_diff(stack.daemon, lower, upper)
    [record] = served(stack, "Diff")[before:]
    digest = str(record["digest"])
    assert digest == "sha256:" + hashlib.sha256(result.layer).hexdigest()
    namespace = result.namespace  # containerd sent none (issue #12328): layerdiff published
    listed = stack.daemon.ctr("content", "ls", namespace=namespace).stdout
    line = next(row for row in listed.splitlines() if row.startswith(digest))
    assert f"containerd.io/uncompressed={digest}" in line  # uncompressed: diffID == digest
    fetched = subprocess.run(
        [str(stack.daemon.bindir / "ctr"), "--address", str(stack.daemon.socket),
         "--namespace", namespace, "content", "get", digest],
        capture_output=True, check=True, timeout=60,
    ).stdout
    assert "sha256:" + hashlib.sha256(fetched).hexdigest() == digest
    # The layer turns lower into upper.
    target = tmp_path / "target"
    subprocess.run(["cp", "-a", "--", str(lower), str(target)], check=True)
    apply_layer(io.BytesIO(result.layer), target)
    assert diff_trees(snapshot_tree(upper), snapshot_tree(target), ignore_atime=True,
                      ignore_dir_mtimes=True) == []
    no_leftovers(stack)


def test_a_corrupt_layer_fails_the_import_with_layerdiffs_error(stack: Stack) -> None:
    good = gzip(layer(("file", "a", {"data": os.urandom(100_000)})))
    corrupt = good[: len(good) // 2]  # a gzip stream cut short; its digest is its own
    described = ocilayout.Layer(
        corrupt, ocilayout.MEDIA_TYPE_LAYER_GZIP, ocilayout.sha256_digest(corrupt),
        "sha256:" + "0" * 64,
    )
    archive = ocilayout.write_oci_archive([described], "layerdiff.test/corrupt:1")
    result = stack.daemon.ctr("images", "import", "--local", "-", stdin=archive, check=False)
    assert result.returncode != 0
    failures = [r for r in stack.server.records()
                if r.get("msg", "").startswith("Apply failed") and r.get("digest") ==
                described.digest]
    assert failures, "layerdiff did not see the corrupt layer"
    message = str(failures[-1]["msg"]).removeprefix("Apply failed: ")
    assert message in result.stderr
    no_leftovers(stack)


def test_zstd_and_gzip_layers_with_whiteouts_across_layers(stack: Stack) -> None:
    layers = [
        gzip(layer(("dir", "d/"), ("file", "d/a", {"data": b"a"}), ("file", "d/b"))),
        zstd(layer(("file", "d/.wh.a"), ("file", "c", {"data": b"c"}))),
    ]
    before = len(served(stack, "Apply"))
    [_, top] = stack.daemon.unpack(layers, "native")
    assert sorted(os.listdir(top / "d")) == ["b"]
    assert (top / "c").read_bytes() == b"c"
    assert len(served(stack, "Apply")) == before + 2
