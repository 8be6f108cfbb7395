"""containerd 1.7's comparer as an oracle: the layer its walking differ writes for two trees.

``containerd_diff`` copies the two trees into two fresh active snapshots of the native
snapshotter (``ctr snapshots prepare``, no parent: a plain directory each) and has the
daemon compare them (``ctr snapshots diff LOWER UPPER``: the diff service's ``Compare``
over bind mounts of the two directories, i.e. continuity's double walk and containerd's
``ChangeWriter``). It returns the uncompressed layer containerd wrote, and the two
snapshot directories, so that layerdiff can be run on exactly the same inputs.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.containerd import CTR_TIMEOUT, Containerd, ContainerdError

MEDIA_TYPE_TAR = "application/vnd.oci.image.layer.v1.tar"
_namespaces = itertools.count(1)


@dataclass(frozen=True)
class ContainerdDiff:
    """What ``containerd_diff`` returns: the layer and the directories it was made from."""

    layer: bytes
    lower: Path
    upper: Path
    namespace: str


def _ctr(
    daemon: Containerd, namespace: str, *args: str, env: Mapping[str, str] | None = None
) -> bytes:
    """Run ctr and return its raw standard output (a layer is binary)."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("CONTAINERD_") and k != "SOURCE_DATE_EPOCH"}
    environ.update(env or {})
    result = subprocess.run(
        [str(daemon.bindir / "ctr"), "--address", str(daemon.socket), "--namespace", namespace,
         *args],
        capture_output=True, timeout=CTR_TIMEOUT, env=environ, check=False,
    )
    if result.returncode != 0:
        raise ContainerdError(
            f"ctr {' '.join(args)} failed ({result.returncode}): "
            f"{result.stderr.decode(errors='replace').strip()}"
        )
    return result.stdout


def _snapshot_with(daemon: Containerd, namespace: str, key: str, tree: Path) -> Path:
    mounts = json.loads(
        _ctr(daemon, namespace, "snapshots", "--snapshotter", "native", "prepare", "--mounts", key)
    )
    if len(mounts) != 1 or mounts[0]["Type"] != "bind":
        raise ContainerdError(f"unexpected mounts for a native snapshot: {mounts}")
    directory = Path(mounts[0]["Source"])
    # cp -a keeps owners, modes, nanosecond times, xattrs and hardlinks; "tree/." also
    # gives the snapshot directory the root's own attributes.
    subprocess.run(["cp", "-a", "--", f"{tree}/.", str(directory)], check=True)
    return directory


def containerd_diff(
    daemon: Containerd,
    lower: Path,
    upper: Path,
    *,
    source_date_epoch: int | None = None,
) -> ContainerdDiff:
    """The uncompressed layer containerd's walking differ writes from ``lower`` to ``upper``.

    ``source_date_epoch`` is passed as ctr's ``SOURCE_DATE_EPOCH``, which ctr forwards
    to the diff service.
    """
    namespace = f"diff-{next(_namespaces)}"
    lower_dir = _snapshot_with(daemon, namespace, "lower", lower)
    upper_dir = _snapshot_with(daemon, namespace, "upper", upper)
    env = {} if source_date_epoch is None else {"SOURCE_DATE_EPOCH": str(source_date_epoch)}
    layer = _ctr(
        daemon, namespace, "snapshots", "--snapshotter", "native", "diff",
        "--media-type", MEDIA_TYPE_TAR, "lower", "upper", env=env,
    )
    return ContainerdDiff(layer, lower_dir, upper_dir, namespace)
