"""Random trees for property tests: what to create at a path, and creating it.

Shared by the round-trip properties of the applier (a tree written by GNU tar comes back)
and of the comparer (apply(diff(L, U)) onto L gives U).
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

IS_ROOT = os.geteuid() == 0
NS = 1_000_000_000

names = st.text(alphabet="ab.-_é", min_size=1, max_size=4).filter(
    lambda n: n not in (".", "..") and not n.startswith(".wh.")
)
modes = st.sampled_from([0o644, 0o600, 0o755, 0o700, 0o4755, 0o2755, 0o1777, 0o444, 0o2640])
ids = st.sampled_from([0, 1, 1000, 65534]) if IS_ROOT else st.just(os.geteuid())
# Whole seconds (as after a tar without PAX times: contents must be compared) or not.
times = st.integers(0, 2**32).map(lambda s: s * NS) | st.integers(0, 2**32 * NS)
xattrs = st.none() | st.binary(min_size=1, max_size=8)
# Hardlinks twice as often as the others: link groups are where comparers go wrong.
KINDS = ["file", "dir", "symlink", "fifo", "hardlink", "hardlink", *(["char"] if IS_ROOT else [])]


@dataclass(frozen=True)
class Node:
    """What to create at one path."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    data: bytes = b""
    target: str = ""
    xattr: bytes | None = None


nodes = st.builds(
    Node,
    kind=st.sampled_from(KINDS),
    mode=modes,
    uid=ids,
    gid=ids,
    mtime_ns=times,
    data=st.binary(max_size=64),
    target=names,
    xattr=xattrs,
)


def list_paths(root: Path) -> list[str]:
    """Every path under root (relative), in a stable order."""
    found = []
    for top, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(top, root)
        for name in sorted(dirs + files):
            found.append(name if rel == "." else f"{rel}/{name}")
    return found


def set_meta(path: Path, node: Node) -> None:
    """Give ``path`` the owner, mode, xattr and times of ``node``."""
    kind = node.kind
    if kind in ("file", "dir") and node.xattr is not None:
        os.setxattr(path, "user.test", node.xattr)
    if IS_ROOT:
        os.chown(path, node.uid, node.gid, follow_symlinks=False)
    if kind != "symlink":
        os.chmod(path, node.mode | 0o700 if kind == "dir" else node.mode)
    os.utime(path, ns=(node.mtime_ns, node.mtime_ns), follow_symlinks=False)


def create(root: Path, rel: str, node: Node) -> None:
    """Create ``node`` at ``rel`` (its parent exists); a hardlink links an existing file."""
    path = root / rel
    if node.kind == "hardlink":
        files = [p for p in list_paths(root) if stat.S_ISREG(os.lstat(root / p).st_mode)]
        if files:
            os.link(root / files[len(node.data) % len(files)], path)
            return
        node = Node("file", node.mode, node.uid, node.gid, node.mtime_ns, node.data)
    if node.kind == "dir":
        path.mkdir()
    elif node.kind == "file":
        path.write_bytes(node.data)
    elif node.kind == "symlink":
        path.symlink_to(node.target)
    elif node.kind == "fifo":
        os.mkfifo(path)
    else:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, len(node.data) % 8))
    set_meta(path, node)


def remove(path: Path) -> None:
    """Remove ``path``, a whole directory included."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
