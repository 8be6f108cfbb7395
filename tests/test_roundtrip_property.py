"""Property: any tree, written as a layer by GNU tar and applied, comes back the same.

The trees are random: nested directories, files with random contents, modes (setuid,
setgid, sticky included), owners, nanosecond times and user xattrs, symlinks (dangling
or not), hardlinks and fifos. GNU tar (POSIX format) is the independent writer.
Access times are not compared: containerd's rule (the later of atime and mtime) is not
the identity, and GNU tar reads the files it archives.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerdiff import apply_layer
from tests.support.tree import diff_trees, snapshot_tree

IS_ROOT = os.geteuid() == 0

names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-é", min_size=1, max_size=12
).filter(lambda n: n not in (".", "..") and not n.startswith(".wh."))
modes = st.sampled_from([0o644, 0o600, 0o755, 0o700, 0o4755, 0o2755, 0o1777, 0o444, 0o640])
ids = st.sampled_from([0, 1, 1000, 65534]) if IS_ROOT else st.just(os.geteuid())
times = st.integers(min_value=0, max_value=2**33).map(lambda s: s * 10**9) | st.integers(
    min_value=0, max_value=2**33 * 10**9
)


@dataclass(frozen=True)
class Node:
    """One path of a random tree."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    data: bytes = b""
    target: str = ""
    xattr: bytes | None = None


def _node(kind: str) -> st.SearchStrategy[Node]:
    return st.builds(
        Node,
        kind=st.just(kind),
        mode=modes,
        uid=ids,
        gid=ids,
        mtime_ns=times,
        data=st.binary(max_size=3000) if kind == "file" else st.just(b""),
        target=names if kind in ("symlink", "hardlink") else st.just(""),
        xattr=st.none() | st.binary(min_size=1, max_size=40),
    )


trees = st.dictionaries(
    keys=st.lists(names, min_size=1, max_size=3).map("/".join),
    values=st.one_of(
        _node("file"), _node("dir"), _node("symlink"), _node("hardlink"), _node("fifo")
    ),
    min_size=1,
    max_size=25,
)


def _build(root: Path, tree: dict[str, Node]) -> None:
    """Materialise ``tree`` under ``root``; paths whose parent is not a directory are dropped."""
    placed: dict[str, Node] = {}
    for path in sorted(tree, key=lambda p: (p.count("/"), p)):
        node = tree[path]
        parent = path.rpartition("/")[0]
        ancestors = [path[:i] for i, c in enumerate(path) if c == "/"]
        if any(a in placed and placed[a].kind != "dir" for a in ancestors):
            continue  # under a file, symlink or fifo: such a tree cannot exist
        if parent:
            (root / parent).mkdir(parents=True, exist_ok=True)
        full = root / path
        if node.kind == "dir":
            full.mkdir()
        elif node.kind == "file":
            full.write_bytes(node.data)
        elif node.kind == "symlink":
            full.symlink_to(node.target)
        elif node.kind == "fifo":
            os.mkfifo(full)
        else:  # hardlink to an earlier regular file, if there is one
            files = [p for p, n in placed.items() if n.kind == "file"]
            if not files:
                continue
            os.link(root / files[len(path) % len(files)], full)
            placed[path] = node
            continue
        placed[path] = node
    for path in sorted(placed, key=lambda p: -p.count("/")):
        node = placed[path]
        target = str(root / path)
        if node.kind == "hardlink":
            continue  # shares its target's metadata
        if node.kind != "symlink":
            if node.xattr is not None and node.kind in ("file", "dir"):
                os.setxattr(target, "user.test", node.xattr)
            if IS_ROOT:
                os.chown(target, node.uid, node.gid)
            os.chmod(target, node.mode if node.kind != "dir" else node.mode | 0o700)
        elif IS_ROOT:
            os.chown(target, node.uid, node.gid, follow_symlinks=False)
        os.utime(target, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=trees)
def test_a_tree_written_as_a_layer_and_applied_comes_back(
    tree: dict[str, Node], tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("roundtrip")
    source, dest, layer = work / "source", work / "dest", work / "layer.tar"
    source.mkdir()
    dest.mkdir()
    _build(source, tree)
    subprocess.run(
        [
            "tar",
            "--format=posix",
            "--xattrs",
            "--xattrs-include=user.*",
            "--numeric-owner",
            "-C",
            str(source),
            "-cf",
            str(layer),
            ".",
        ],
        check=True,
    )
    expected = snapshot_tree(source)
    apply_layer(layer, dest)
    assert diff_trees(expected, snapshot_tree(dest), ignore_atime=True) == []
