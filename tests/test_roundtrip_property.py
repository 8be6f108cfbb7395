"""Property: any tree, written as a layer by GNU tar and applied, comes back the same.

The trees are random (tests/support/randomtree.py): nested directories, files with random
contents, modes (setuid, setgid, sticky included), owners, nanosecond times and user
xattrs, symlinks (dangling or not), hardlinks, fifos and, as root, devices. GNU tar
(POSIX format) is the independent writer. Access times are not compared: containerd's
rule (the later of atime and mtime) is not the identity, and GNU tar reads the files it
archives.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerdiff import apply_layer
from tests.support.randomtree import Node, create, names, nodes, set_meta
from tests.support.tree import diff_trees, snapshot_tree

trees = st.dictionaries(
    keys=st.lists(names, min_size=1, max_size=3).map("/".join),
    values=nodes,
    min_size=1,
    max_size=25,
)


def _build(root: Path, tree: dict[str, Node]) -> None:
    """Materialise ``tree`` under ``root``; paths below a non-directory are dropped."""
    placed: dict[str, Node] = {}
    for path in sorted(tree, key=lambda p: (p.count("/"), p)):
        ancestors = [path[:i] for i, c in enumerate(path) if c == "/"]
        if any(a in placed and placed[a].kind != "dir" for a in ancestors):
            continue  # under a file, symlink, fifo or device: such a tree cannot exist
        parent = path.rpartition("/")[0]
        if parent:
            (root / parent).mkdir(parents=True, exist_ok=True)
        create(root, path, tree[path])
        placed[path] = tree[path]
    # Creating children changed their directories' times: set them again, deepest first.
    for path in sorted(placed, key=lambda p: -p.count("/")):
        if placed[path].kind == "dir":
            set_meta(root / path, placed[path])


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
