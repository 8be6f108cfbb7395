"""A real containerd 1.7 daemon with a private root and socket: the tests' oracle.

``Containerd.unpack`` imports an image made of the given layer blobs with ``ctr images
import`` and hands back the directories containerd's own differ produced: for the native
snapshotter the full tree after each layer, for the overlayfs snapshotter each layer's
upperdir. Nothing is faked: the layers go through containerd's content store, its
walking differ and its snapshotters exactly as in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.support.ocilayout import image_archive

DEFAULT_BIN = Path("/var/cache/layerdiff-ci/containerd/root/usr/bin")
_STARTUP_SECONDS = 30
_SNAPSHOTTER_DIRS = {
    "native": ("io.containerd.snapshotter.v1.native", ""),
    "overlayfs": ("io.containerd.snapshotter.v1.overlayfs", "fs"),
}
_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "warn"
"""


class ContainerdUnpackError(Exception):
    """containerd refused to unpack the image; ``stderr`` says why."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr.strip().splitlines()[-1] if stderr.strip() else "failed")
        self.stderr = stderr


def binary_dir() -> Path:
    """Where containerd and ctr are (``LAYERDIFF_CONTAINERD_BIN`` overrides)."""
    return Path(os.environ.get("LAYERDIFF_CONTAINERD_BIN", DEFAULT_BIN))


def available() -> bool:
    """Whether the binaries are there to run."""
    bindir = binary_dir()
    return (bindir / "containerd").is_file() and (bindir / "ctr").is_file()


class Containerd:
    """One private containerd daemon; use as a context manager."""

    def __init__(self) -> None:
        self.bindir = binary_dir()
        self.workdir = Path(tempfile.mkdtemp(prefix="layerdiff-containerd-"))
        self.root = self.workdir / "root"
        self.socket = self.workdir / "containerd.sock"
        self._process: subprocess.Popen[bytes] | None = None
        self._namespaces = 0

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

    def start(self) -> None:
        """Start the daemon and wait until it answers."""
        config = self.workdir / "config.toml"
        config.write_text(
            _CONFIG.format(root=self.root, state=self.workdir / "state", socket=self.socket)
        )
        # containerd resolves one hardlink check against its working directory: give
        # it an empty one so that the host's files cannot influence an unpack.
        cwd = self.workdir / "cwd"
        cwd.mkdir()
        log = (self.workdir / "containerd.log").open("wb")
        self._process = subprocess.Popen(
            [str(self.bindir / "containerd"), "--config", str(config)],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.log_tail()}")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"containerd did not start in {_STARTUP_SECONDS}s: {self.log_tail()}")

    def log_tail(self) -> str:
        """The last lines the daemon logged."""
        path = self.workdir / "containerd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the daemon, unmount what it left mounted, remove its directories."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self._unmount_all()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _unmount_all(self) -> None:
        prefix = str(self.workdir) + "/"
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            targets = [line.split()[1] for line in mounts]
        for target in sorted((t for t in targets if t.startswith(prefix)), reverse=True):
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(["umount", "-l", target], check=True, capture_output=True)

    def ctr(
        self, *args: str, namespace: str = "default", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` against this daemon."""
        command = [str(self.bindir / "ctr"), "-a", str(self.socket), "-n", namespace, *args]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=300)

    def _snapshot_dirs(self, snapshotter: str) -> set[int]:
        plugin, _ = _SNAPSHOTTER_DIRS[snapshotter]
        base = self.root / plugin / "snapshots"
        if not base.is_dir():
            return set()
        return {int(p.name) for p in base.iterdir() if p.name.isdigit()}

    def unpack(self, layers: Sequence[bytes], snapshotter: str) -> list[Path]:
        """Import and unpack an image of ``layers``; one directory per layer, in order."""
        archive, _ = image_archive(layers)
        self._namespaces += 1
        namespace = f"case{self._namespaces}"
        image_file = self.workdir / f"{namespace}.tar"
        image_file.write_bytes(archive)
        before = self._snapshot_dirs(snapshotter)
        result = self.ctr(
            "images",
            "import",
            "--base-name",
            "layerdiff.test/image",
            "--snapshotter",
            snapshotter,
            str(image_file),
            namespace=namespace,
            check=False,
        )
        image_file.unlink()
        if result.returncode != 0:
            raise ContainerdUnpackError(result.stderr)
        # Each layer is prepared, applied and committed in order; the snapshotter numbers
        # its directories as it creates them, so the new ones are the layers, in order.
        created = sorted(self._snapshot_dirs(snapshotter) - before)
        if len(created) != len(layers):
            raise RuntimeError(f"expected {len(layers)} new snapshots, found {len(created)}")
        plugin, sub = _SNAPSHOTTER_DIRS[snapshotter]
        base = self.root / plugin / "snapshots"
        return [base / str(n) / sub if sub else base / str(n) for n in created]
