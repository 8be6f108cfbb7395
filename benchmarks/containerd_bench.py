"""containerd 1.7's walking differ as a contender, through its own Diff API.

A private daemon (``tests.support.containerd``: Debian's containerd 1.7 from
.ci/fetch-containerd, its root, state and socket on a tmpfs of their own) holds every
layer blob in its content store (``ctr content ingest``, untimed, labelled as a GC root).
What is timed is one gRPC call, from request to response:

- apply: ``Diff.Apply(descriptor, [bind mount of the target])``: the walking differ
  mounts the target, reads the blob from its content store, decompresses it (Go's
  gzip: no ``unpigz`` is on the daemon's PATH; klauspost's zstd), hashes the tar stream
  (the diffID check) and applies it (``archive.Apply``). This is exactly what its
  unpacker does per layer in ``ctr images import``/``pull``, without the content ingest
  and the snapshotter bookkeeping around it.
- diff: ``Diff.Diff([bind lower, ro], [bind upper, ro], media type)``: the double walk
  (continuity's ``fs.Changes``) writing the layer into its content store. This is what
  ``ctr snapshots diff`` asks for, without ctr reading the blob back to stdout.

Peak memory is the daemon's ``VmHWM``, reset before each call (``clear_refs`` 5): the
whole daemon's peak during the call, its idle footprint included.
"""

from __future__ import annotations

import itertools
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import grpc

from benchmarks.common import BenchError, run, system_tool
from benchmarks.measure import Sample
from layerdiff.api import descriptor_pb2, diff_pb2, diff_pb2_grpc, mount_pb2
from tests.support.containerd import Containerd, ContainerdError, available, binary_dir

NAMESPACE = "default"
MEDIA_TYPES = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "tar.gz": "application/vnd.oci.image.layer.v1.tar+gzip",
    "tar.zst": "application/vnd.oci.image.layer.v1.tar+zstd",
}
CALL_TIMEOUT = 3600.0


class ContainerdBench:
    """A private containerd on its own tmpfs; a context manager."""

    def __init__(self, workdir: Path) -> None:
        if not available():
            raise BenchError(f"containerd is not in {binary_dir()}: run .ci/fetch-containerd")
        self.workdir = workdir
        self._refs = itertools.count(1)
        self._daemon: Containerd | None = None
        self._channel: grpc.Channel | None = None

    def __enter__(self) -> ContainerdBench:
        self.workdir.mkdir(parents=True, exist_ok=True)
        run([system_tool("mount"), "-t", "tmpfs", "-o", "size=50%,mode=700", "tmpfs",
             str(self.workdir)])
        try:
            # Containerd() makes its folder with mkdtemp: on our tmpfs, like the targets.
            saved, tempfile.tempdir = tempfile.tempdir, str(self.workdir)
            try:
                self._daemon = Containerd()
            finally:
                tempfile.tempdir = saved
            self._daemon.start()
        except (ContainerdError, OSError) as err:
            self.__exit__(None, None, None)
            raise BenchError(f"containerd did not start: {err}") from None
        self._channel = grpc.insecure_channel(f"unix://{self._daemon.socket}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._daemon is not None:
            self._daemon.stop()
        run([system_tool("umount"), str(self.workdir)])

    @property
    def daemon(self) -> Containerd:
        """The running daemon."""
        if self._daemon is None:
            raise BenchError("containerd is not running")
        return self._daemon

    def version(self) -> str:
        """containerd's own version line."""
        result = subprocess.run([str(self.daemon.bindir / "containerd"), "--version"],
                                capture_output=True, text=True, check=False)
        return result.stdout.strip()

    def ingest(self, blob: Path, suffix: str, digest: str) -> descriptor_pb2.Descriptor:
        """Put a blob into the content store (untimed); its descriptor for Apply."""
        size = blob.stat().st_size
        ctr = [str(self.daemon.bindir / "ctr"), "--address", str(self.daemon.socket),
               "--namespace", NAMESPACE, "content"]
        with open(blob, "rb") as source:
            run([*ctr, "ingest", "--expected-digest", digest, "--expected-size", str(size),
                 f"bench-{next(self._refs)}"], stdin=source)
        # No image refers to it: without a root label the garbage collector may take it.
        run([*ctr, "label", digest, "containerd.io/gc.root=bench"])
        return descriptor_pb2.Descriptor(media_type=MEDIA_TYPES[suffix], digest=digest,
                                         size=size)

    def apply(self, descriptor: descriptor_pb2.Descriptor, dest: Path) -> Sample:
        """Time Diff.Apply of an ingested blob onto the directory dest."""
        request = diff_pb2.ApplyRequest(
            diff=descriptor,
            mounts=[mount_pb2.Mount(type="bind", source=str(dest), options=["rbind", "rw"])],
        )
        return self._timed(lambda stub: stub.Apply(request, timeout=CALL_TIMEOUT,
                                                   metadata=self._metadata))

    def diff(self, lower: Path, upper: Path, suffix: str) -> Sample:
        """Time Diff.Diff of two directories; the layer it wrote is removed afterwards."""
        request = diff_pb2.DiffRequest(
            left=[mount_pb2.Mount(type="bind", source=str(lower), options=["rbind", "ro"])],
            right=[mount_pb2.Mount(type="bind", source=str(upper), options=["rbind", "ro"])],
            media_type=MEDIA_TYPES[suffix],
            ref=f"bench-diff-{next(self._refs)}",
        )
        responses: list[diff_pb2.DiffResponse] = []
        sample = self._timed(lambda stub: responses.append(
            stub.Diff(request, timeout=CALL_TIMEOUT, metadata=self._metadata)))
        self.daemon.ctr("content", "rm", responses[0].diff.digest, namespace=NAMESPACE)
        return sample

    _metadata = (("containerd-namespace", NAMESPACE),)

    def _timed(self, call: Callable[[diff_pb2_grpc.DiffStub], object]) -> Sample:
        if self._channel is None:
            raise BenchError("containerd is not running")
        stub = diff_pb2_grpc.DiffStub(self._channel)
        # The harness keeps the daemon's process private; its pid is all we need of it.
        process = self.daemon._process
        if process is None:
            raise BenchError("containerd is not running")
        pid = process.pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM
        start = time.perf_counter()
        try:
            call(stub)
        except grpc.RpcError as err:
            raise BenchError(f"containerd: {err.details()}") from None
        elapsed = time.perf_counter() - start
        return Sample(elapsed, _vm_hwm(pid))


def _vm_hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmHWM for containerd (pid {pid})")
