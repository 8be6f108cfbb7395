"""A real containerd 1.7 daemon with a private root, state and socket: the tests' oracle.

``Containerd.unpack`` imports an image made of the given layer blobs with ``ctr images
import`` and returns the directories containerd's own walking differ produced: with the
native snapshotter the full tree after each layer, with the overlayfs snapshotter each
layer's upperdir. Nothing is faked: the layers go through containerd's content store,
its unpacker, its diff service and its snapshotters as in production. The binaries are
Debian's (see .ci/fetch-containerd).

Layout of what containerd leaves under ``root`` (1.7): native snapshots are
``io.containerd.snapshotter.v1.native/snapshots/<id>``, each a full copy of its parent
plus the layer; overlayfs snapshots are ``io.containerd.snapshotter.v1.overlayfs/
snapshots/<id>/fs`` (the upperdir; ``work`` beside it). ``<id>`` is the snapshotter's
internal counter, which no ctr command prints: a committed snapshot is named by its
chain ID, so ``unpack`` finds each directory through the mounts of a view of that chain
ID (a bind of the directory, or an overlay whose first lowerdir is it).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from layerdiff.mount import mount_points
from tests.support import ocilayout
from tests.support.tree import MNT_DETACH, unmount

DEFAULT_BIN = Path("/var/cache/layerdiff-ci/containerd/root/usr/bin")
SNAPSHOTTERS = ("native", "overlayfs")
STARTUP_TIMEOUT = 30.0
CTR_TIMEOUT = 300.0
_PR_SET_PDEATHSIG = 1

# Everything but what an import and unpack needs: CRI (it would configure CNI under
# /etc), the snapshotters that probe the host's file systems and tools, runtimes, tasks,
# sandboxes, NRI, tracing, and the transfer service (ctr imports with --local).
_DISABLED_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.blockfile",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.runtime.v1.linux",
    "io.containerd.runtime.v2.task",
    "io.containerd.runtime.v2.shim",
    "io.containerd.monitor.v1.cgroups",
    "io.containerd.service.v1.tasks-service",
    "io.containerd.grpc.v1.tasks",
    "io.containerd.internal.v1.restart",
    "io.containerd.sandbox.store.v1.local",
    "io.containerd.sandbox.controller.v1.local",
    "io.containerd.grpc.v1.sandbox-controllers",
    "io.containerd.grpc.v1.sandboxes",
    "io.containerd.nri.v1.nri",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
    "io.containerd.transfer.v1.local",
    "io.containerd.grpc.v1.transfer",
    "io.containerd.streaming.v1.manager",
    "io.containerd.grpc.v1.streaming",
]
# What ``ctr run`` needs on top of an unpack: runtimes, shims, tasks.
_TASK_PLUGINS = {
    "io.containerd.runtime.v1.linux",
    "io.containerd.runtime.v2.task",
    "io.containerd.runtime.v2.shim",
    "io.containerd.monitor.v1.cgroups",
    "io.containerd.service.v1.tasks-service",
    "io.containerd.grpc.v1.tasks",
    "io.containerd.internal.v1.restart",
    "io.containerd.sandbox.store.v1.local",
    "io.containerd.sandbox.controller.v1.local",
    "io.containerd.streaming.v1.manager",
    "io.containerd.grpc.v1.streaming",
}
# containerd refuses to start without these, rather than failing later in an unpack.
_REQUIRED_PLUGINS = [
    "io.containerd.snapshotter.v1.native",
    "io.containerd.snapshotter.v1.overlayfs",
    "io.containerd.differ.v1.walking",
    "io.containerd.grpc.v1.snapshots",
    "io.containerd.grpc.v1.diff",
]


class ContainerdError(Exception):
    """The harness could not do what was asked (not a verdict on a layer)."""


class ContainerdUnpackError(Exception):
    """containerd refused to import or unpack the image; ``stderr`` is ctr's account."""

    def __init__(self, stderr: str) -> None:
        lines = stderr.strip().splitlines()
        super().__init__(lines[-1] if lines else "ctr images import failed")
        self.stderr = stderr


def binary_dir() -> Path:
    """Where containerd and ctr are: $LAYERDIFF_CONTAINERD_BIN or the CI's cache."""
    return Path(os.environ.get("LAYERDIFF_CONTAINERD_BIN") or DEFAULT_BIN)


def available() -> bool:
    """Whether both binaries are there and executable."""
    return all(os.access(binary_dir() / name, os.X_OK) for name in ("containerd", "ctr"))


def _toml(value: object) -> str:
    # JSON strings and arrays of strings are valid TOML basic strings and arrays.
    return json.dumps(value)


_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test process dies without
    # stopping the daemon (SIGKILL, a crash), the kernel sends it SIGTERM. (Strictly,
    # when the thread that started it ends: start() from the main thread.) Only a libc
    # function resolved beforehand is called, so no lock of another thread is needed.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Containerd:
    """One private containerd daemon; a context manager (or call start() and stop())."""

    def __init__(
        self, bindir: Path | None = None, *, extra_config: str = "", tasks: bool = False
    ) -> None:
        """``extra_config`` is TOML appended to the daemon's config; ``tasks`` keeps the
        plugins that ``ctr run`` needs (runtimes, shims; runc from .ci/fetch-containerd)."""
        self.bindir = bindir or binary_dir()
        self.extra_config = extra_config
        self.tasks = tasks
        # Resolved: it is matched against /proc/self/mountinfo, which has no symlinks.
        self.workdir = Path(os.path.realpath(tempfile.mkdtemp(prefix="layerdiff-containerd-")))
        self.root = self.workdir / "root"
        self.state = self.workdir / "state"
        self.socket = self.workdir / "containerd.sock"
        self.log = self.workdir / "containerd.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._namespaces = itertools.count(1)
        atexit.register(self.stop)  # whatever happens, no daemon or directory outlives us

    def __enter__(self) -> Containerd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self) -> Path:
        config = self.workdir / "config.toml"
        disabled = [p for p in _DISABLED_PLUGINS if not (self.tasks and p in _TASK_PLUGINS)]
        config.write_text(
            f"""\
version = 2
root = {_toml(str(self.root))}
state = {_toml(str(self.state))}
temp = {_toml(str(self.workdir / "tmp"))}
disabled_plugins = {_toml(disabled)}
required_plugins = {_toml(_REQUIRED_PLUGINS)}

[grpc]
  address = {_toml(str(self.socket))}

[ttrpc]
  address = {_toml(str(self.socket) + ".ttrpc")}

[debug]
  level = "info"

{self.extra_config}
"""
        )
        return config

    def start(self) -> None:
        """Start the daemon and wait (at most STARTUP_TIMEOUT) until it answers."""
        if self._process is not None or not self.workdir.exists():
            raise ContainerdError("a Containerd starts once")
        config = self._write_config()
        (self.workdir / "tmp").mkdir()
        # Reportedly one hardlink path in containerd's applier is resolved against its
        # working directory, not the unpack root (the simple cases, "x" -> "victim",
        # "../victim", "/victim", are not): an empty private one keeps the host's files
        # out of any such resolution.
        cwd = self.workdir / "cwd"
        cwd.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERD_")}
        env["TMPDIR"] = str(self.workdir / "tmp")
        # Shims and runc are looked up in PATH; ours come first.
        sbin = self.bindir.parent / "sbin"
        env["PATH"] = os.pathsep.join([str(self.bindir), str(sbin), env.get("PATH", "")])
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [str(self.bindir / "containerd"), "--config", str(config)],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C reaches pytest, which then stops us in order
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - see _die_with_parent
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self._process.poll() is not None:
                message = f"containerd exited with {self._process.returncode}:\n{self.log_tail()}"
                self.stop()
                raise ContainerdError(message)
            if self.socket.exists():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    if self.ctr("version", check=False, timeout=5).returncode == 0:
                        return
            if time.monotonic() > deadline:
                self.stop()
                raise ContainerdError(
                    f"containerd did not answer within {STARTUP_TIMEOUT:.0f}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop the daemon, unmount what is left under its root, remove its directories.

        Idempotent; also registered with atexit so that no daemon outlives the tests.
        """
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not self.workdir.exists():
            return
        prefix = str(self.workdir) + "/"
        # Deepest first; detach, since a busy mount must not keep us from cleaning up.
        for point in sorted((p for p in mount_points() if p.startswith(prefix)), reverse=True):
            try:
                unmount(point, MNT_DETACH)
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOENT):  # already gone
                    raise
        left = [p for p in mount_points() if p.startswith(prefix)]
        if left:
            # rmtree would descend into them and delete what they show.
            raise ContainerdError(f"still mounted, not removing {self.workdir}: {left}")
        shutil.rmtree(self.workdir)

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the daemon's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def ingest_kept(
        self, ref: str, blob: bytes | Path, *, namespace: str = "default",
        labels: Sequence[str] = (),
    ) -> str:
        """``ctr content ingest`` of ``blob`` (bytes, or a file: ctr seeks a file to what
        the store already has), then a ``containerd.io/gc.root`` label and ``labels``;
        returns the digest.

        ctr ingests without a lease, so until the label the blob is garbage to
        containerd's collector, which the other tests of the session keep busy: if the
        collector was faster, the ingest is done again.
        """
        data = blob.read_bytes() if isinstance(blob, Path) else blob
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        for _ in range(5):
            with contextlib.ExitStack() as stack:
                stdin = stack.enter_context(blob.open("rb")) if isinstance(blob, Path) else data
                self.ctr("content", "ingest", "--expected-size", str(len(data)),
                         "--expected-digest", digest, ref, namespace=namespace, stdin=stdin)
            labelled = self.ctr("content", "label", digest, "containerd.io/gc.root=test",
                                *labels, namespace=namespace, check=False)
            if labelled.returncode == 0:
                return digest
        raise ContainerdError(f"{digest} was collected after every ingest: "
                              f"{labelled.stderr.strip()}")

    def ctr(
        self,
        *args: str,
        namespace: str = "default",
        check: bool = True,
        stdin: bytes | BinaryIO | None = None,
        timeout: float = CTR_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` against this daemon in a namespace; stdout and stderr captured.

        ``stdin``: bytes, or an open file (which ctr may seek).
        """
        command = [str(self.bindir / "ctr"), "--address", str(self.socket),
                   "--namespace", namespace, *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTAINERD_")}
        data, file = (stdin, None) if stdin is None or isinstance(stdin, bytes) else (None, stdin)
        result = subprocess.run(command, input=data, stdin=file, capture_output=True,
                                timeout=timeout, env=env, check=False)
        completed = subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            raise ContainerdError(
                f"{' '.join(args)} failed ({completed.returncode}): {completed.stderr.strip()}"
            )
        return completed

    def unpack(self, layers: Sequence[bytes], snapshotter: str) -> list[Path]:
        """Have containerd import and unpack an image of layers (blobs, bottom first).

        Returns one directory per layer, in order: for ``native`` the committed snapshot
        (the whole tree after layers 0..i), for ``overlayfs`` the layer's upperdir.
        Raises ContainerdUnpackError when containerd refuses the image. Every call uses a
        fresh namespace, so calls share no snapshots; the directories stay until stop().
        """
        if snapshotter not in SNAPSHOTTERS:
            raise ValueError(f"snapshotter must be one of {SNAPSHOTTERS}, not {snapshotter!r}")
        if not layers:
            raise ValueError("an image needs at least one layer")
        described = [ocilayout.layer(blob) for blob in layers]
        namespace = f"unpack-{next(self._namespaces)}"
        archive = ocilayout.write_oci_archive(described, f"layerdiff.test/{namespace}:latest")
        result = self.ctr(
            "images", "import", "--local", "--snapshotter", snapshotter, "-",
            namespace=namespace, stdin=archive, check=False,
        )
        if result.returncode != 0:
            raise ContainerdUnpackError(result.stderr)
        chain = ocilayout.chain_ids([d.diff_id for d in described])
        return [self._snapshot_dir(namespace, snapshotter, i, c) for i, c in enumerate(chain)]

    def pull(
        self,
        ref: str,
        snapshotter: str,
        diff_ids: Sequence[str],
        *,
        platform: str | None = None,
        user: str | None = None,
    ) -> list[Path]:
        """Have containerd pull and unpack ``ref`` over plain HTTP into a fresh namespace;
        its snapshot directories, bottom first (as ``unpack`` returns them)."""
        namespace = f"pull-{next(self._namespaces)}"
        args = ["images", "pull", "--local", "--plain-http", "--snapshotter", snapshotter]
        args += ["--platform", platform] if platform else []
        args += ["--user", user] if user else []
        self.ctr(*args, ref, namespace=namespace)
        chain = ocilayout.chain_ids(list(diff_ids))
        return [self._snapshot_dir(namespace, snapshotter, i, c) for i, c in enumerate(chain)]

    def _snapshot_dir(self, namespace: str, snapshotter: str, index: int, chain_id: str) -> Path:
        key = f"layerdiff-view-{index}"

        def snapshots(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            return self.ctr(
                "snapshots", "--snapshotter", snapshotter, *args, namespace=namespace,
                check=check,
            )

        view = snapshots("view", "--mounts", key, chain_id, check=False)
        if view.returncode != 0:
            raise ContainerdError(
                f"layer {index} ({chain_id}) was not unpacked: {view.stderr.strip()}"
            )
        # The view exists only to learn the path; it is not mounted. (The garbage
        # collector may already have removed it: it holds no lease.)
        snapshots("rm", key, check=False)
        mounts = json.loads(view.stdout)
        if len(mounts) != 1:
            raise ContainerdError(f"unexpected mounts for a view of {chain_id}: {mounts}")
        (m,) = mounts
        if m["Type"] == "bind":
            path = Path(m["Source"])
        elif m["Type"] == "overlay":
            lowerdirs = [o.removeprefix("lowerdir=") for o in m["Options"]
                         if o.startswith("lowerdir=")]
            path = Path(lowerdirs[0].split(":")[0])  # top first
        else:
            raise ContainerdError(f"unexpected mount for a view of {chain_id}: {m}")
        base = self.root / f"io.containerd.snapshotter.v1.{snapshotter}" / "snapshots"
        if snapshotter == "native":
            where_expected = path.parent == base
        else:
            where_expected = path.name == "fs" and path.parent.parent == base
        if not where_expected or not path.is_dir():
            raise ContainerdError(f"unexpected snapshot path for {chain_id}: {path}")
        return path
