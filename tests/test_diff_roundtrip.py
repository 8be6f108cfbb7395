"""Round trip: for any lower tree L and upper tree U, applying diff(L, U) onto L gives U.

L is random (files, directories, symlinks, hardlinks, fifos, devices; modes with setuid,
setgid and sticky bits; owners; nanosecond or whole-second times; user xattrs), U is a
copy of L changed by random operations (writes in place, replacements by another type,
deletions, new entries, chmod, chown, touch, xattrs set and removed, hardlinks made and
broken). The comparison is of everything an unpacker decides (tests/support/tree.py),
access times and the root's own times aside: a layer carries neither.

One change is left out by construction, because no metadata-driven comparer can see it
(containerd's neither): new content of the same size under the same nanosecond time.
Such a file gets one more nanosecond (see docs/diff.md).

A second test does the same on a realistic tree: a copy of an installed site-packages
with the changes a package upgrade makes.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerdiff import DiffOptions, apply_layer, diff_trees
from layerdiff.compression import Compression
from tests.support.randomtree import (
    IS_ROOT,
    NS,
    Node,
    create,
    list_paths,
    names,
    nodes,
    remove,
)
from tests.support.tree import diff_trees as tree_differences
from tests.support.tree import snapshot_tree

# An operation: (what, which path (an index into the current paths), argument).
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["add", "replace", "delete", "write", "chmod", "chown", "touch", "xattr",
             "link", "link", "copy", "copy"]
        ),
        st.integers(0, 1000),
        nodes,
        names,
    ),
    max_size=10,
)


def _operate(root: Path, op: tuple[str, int, Node, str]) -> None:
    what, index, node, name = op
    paths = list_paths(root)
    if what == "add" or not paths:
        dirs = ["", *(p for p in paths if (root / p).is_dir() and not (root / p).is_symlink())]
        parent = dirs[index % len(dirs)]
        rel = f"{parent}/{name}" if parent else name
        if not os.path.lexists(root / rel):
            create(root, rel, node)
        return
    rel = paths[index % len(paths)]
    path = root / rel
    st_ = os.lstat(path)
    if what == "delete":
        remove(path)
    elif what == "replace":
        remove(path)
        create(root, rel, node)
    elif what == "write" and stat.S_ISREG(st_.st_mode):
        with open(path, "r+b") as f:  # in place: every hardlink of it changes too
            f.truncate()
            f.write(node.data)
        os.utime(path, ns=(node.mtime_ns, node.mtime_ns))
    elif what == "chmod" and not stat.S_ISLNK(st_.st_mode):
        os.chmod(path, node.mode | (0o700 if stat.S_ISDIR(st_.st_mode) else 0))
    elif what == "chown" and IS_ROOT:
        os.chown(path, node.uid, node.gid, follow_symlinks=False)
        if not stat.S_ISLNK(st_.st_mode):
            os.chmod(path, stat.S_IMODE(st_.st_mode))  # chown clears setuid/setgid
    elif what == "touch":
        os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)
    elif what == "xattr" and (stat.S_ISREG(st_.st_mode) or stat.S_ISDIR(st_.st_mode)):
        if node.xattr is None:
            if "user.test" in os.listxattr(path):
                os.removexattr(path, "user.test")
        else:
            os.setxattr(path, "user.test", node.xattr)
    elif what == "link" and stat.S_ISREG(st_.st_mode):
        # Another path becomes a hardlink of this file (ln -f), new or replacing a file.
        others = [p for p in paths if not (root / p).is_dir() or (root / p).is_symlink()]
        other = others[len(node.data) % len(others)]
        if other != rel:
            temporary = root / f"{other}.tmp-link"
            os.link(path, temporary)
            os.rename(temporary, root / other)
            if os.path.lexists(temporary):
                # rename(2) does nothing when both names are links of one file already.
                os.unlink(temporary)
    elif what == "copy" and stat.S_ISREG(st_.st_mode):
        # An identical copy replaces it (cp -p): same metadata, but its own inode.
        subprocess.run(["cp", "-a", "--", str(path), f"{path}.tmp-copy"], check=True)
        os.rename(f"{path}.tmp-copy", path)


def _reveal_same_time_rewrites(lower: Path, upper: Path) -> None:
    """Give one more nanosecond to files whose content alone changed (see module doc)."""
    for rel in list_paths(upper):
        up, low = upper / rel, lower / rel
        ust = os.lstat(up)
        try:
            lst = os.lstat(low)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if (
            stat.S_ISREG(ust.st_mode)
            and stat.S_ISREG(lst.st_mode)
            and (ust.st_size, ust.st_mtime_ns) == (lst.st_size, lst.st_mtime_ns)
            and ust.st_mtime_ns % NS
            and _sha(up) != _sha(low)
        ):
            os.utime(up, ns=(ust.st_atime_ns, ust.st_mtime_ns + 1))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy(src: Path, dst: Path) -> None:
    # cp -a keeps hardlinks, owners, modes, nanosecond times and xattrs.
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)


def roundtrip(lower: Path, upper: Path, work: Path, compression: Compression) -> list[str]:
    """Apply diff(lower, upper) onto a copy of lower; the differences with upper."""
    target = work / "target"
    _copy(lower, target)
    layer = io.BytesIO()
    diff_trees(lower, upper, layer, DiffOptions(compression=compression))
    expected = snapshot_tree(upper)
    apply_layer(io.BytesIO(layer.getvalue()), target)
    return tree_differences(expected, snapshot_tree(target), ignore_atime=True)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lower_ops=st.lists(st.tuples(st.just("add"), st.integers(0, 1000), nodes, names),
                       min_size=1, max_size=20),
    upper_ops=operations,
    compression=st.sampled_from(list(Compression)),
)
def test_applying_the_diff_onto_the_lower_tree_gives_the_upper_tree(
    lower_ops: list[tuple[str, int, Node, str]],
    upper_ops: list[tuple[str, int, Node, str]],
    compression: Compression,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    work = tmp_path_factory.mktemp("diff-roundtrip")
    lower, upper = work / "lower", work / "upper"
    lower.mkdir()
    for op in lower_ops:
        _operate(lower, op)
    _copy(lower, upper)
    for op in upper_ops:
        _operate(upper, op)
    _reveal_same_time_rewrites(lower, upper)
    assert roundtrip(lower, upper, work, compression) == []


def test_a_package_upgrade_in_a_real_site_packages_round_trips(tmp_path: Path) -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    _copy(site, lower)
    _copy(lower, upper)
    packages = sorted(p for p in upper.iterdir() if p.is_dir() and not p.name.endswith("-info"))
    assert len(packages) > 5
    # Uninstall one package, upgrade another (every module rewritten, one removed, one
    # added, its metadata directory renamed), and byte-compile a third.
    shutil.rmtree(packages[0])
    upgraded = packages[1]
    modules = sorted(upgraded.rglob("*.py"))
    for module in modules[1:]:
        module.write_bytes(module.read_bytes() + b"\n# upgraded\n")
    modules[0].unlink()
    (upgraded / "_new_module.py").write_text("VALUE = 1\n")
    (upgraded / "_new_module.py").chmod(0o755)
    (upgraded / "latest").symlink_to("_new_module.py")
    for info in upper.glob(f"{upgraded.name}*-info"):
        info.rename(info.with_name(info.name.replace("-", "-9", 1)))
    subprocess.run(
        ["python3", "-m", "compileall", "-q", str(packages[2])], check=True, capture_output=True
    )
    os.setxattr(packages[3], "user.origin", b"pip")
    assert roundtrip(lower, upper, tmp_path, Compression.GZIP) == []
