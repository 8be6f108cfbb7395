"""``layerdiff serve`` as a real process: for tests of the server itself, and for tests
that use it as containerd's differ."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layerdiff.api import descriptor_pb2, diff_pb2_grpc, mount_pb2
from layerdiff.content.ingest import unique_ref, write_blob
from layerdiff.content.local import LocalStore
from layerdiff.mount import mount_points

STARTUP_TIMEOUT = 30.0


class ServeError(Exception):
    """The server did not start, or did not stop cleanly."""


class LayerdiffServer:
    """One ``layerdiff serve`` process; a context manager."""

    def __init__(
        self,
        workdir: Path,
        *args: str,
        config: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.socket = workdir / "layerdiff.sock"
        self.log = workdir / "layerdiff.log"
        self.args = list(args)
        self.config = config
        #: Variables added to the server's environment (e.g. PYTHONPATH for plugins).
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LayerdiffServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until its health service says SERVING."""
        command = [sys.executable, "-m", "layerdiff", "serve",
                   "--address", f"unix://{self.socket}", *self.args]
        if self.config is not None:
            path = self.workdir / "layerdiff.toml"
            path.write_text(self.config)
            command += ["--config", str(path)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self.serving():
            if self.process.poll() is not None:
                raise ServeError(f"layerdiff serve exited: {self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServeError("layerdiff serve did not become healthy")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        """The server's process ID (it must be running)."""
        if self.process is None:
            raise ServeError("layerdiff serve is not running")
        return self.process.pid

    @contextlib.contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        """A gRPC channel to the server's socket."""
        with grpc.insecure_channel(f"unix:{self.socket}") as channel:
            yield channel

    @contextlib.contextmanager
    def diff(self) -> Iterator[diff_pb2_grpc.DiffStub]:
        """A client of the server's Diff service."""
        with self.channel() as channel:
            yield diff_pb2_grpc.DiffStub(channel)

    def serving(self) -> bool:
        """Whether the health service answers SERVING."""
        if not self.socket.exists():
            return False
        with grpc.insecure_channel(f"unix:{self.socket}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            with contextlib.suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        return False

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait; returns the exit code (SIGKILL after ``timeout``)."""
        if self.process is None:
            return 0
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                raise ServeError("layerdiff serve did not stop on SIGTERM") from None
        return process.returncode

    def records(self) -> Iterator[dict[str, Any]]:
        """The JSON log records written so far."""
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    yield record

    def wait_for_record(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first log record ``match`` accepts, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = next((r for r in self.records() if match(r)), None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise ServeError(f"no such log record in {self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def children(self) -> set[int]:
        """The server's child processes (stream processors), running or not yet reaped."""
        return children_of(self.pid)


def put(store: LocalStore, blob: bytes, media_type: str) -> descriptor_pb2.Descriptor:
    """Store ``blob``; its descriptor as a message."""
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    write_blob(store, unique_ref("test"), io.BytesIO(blob), size=len(blob), digest=digest)
    return descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=len(blob))


def bind(path: Path, *options: str) -> mount_pb2.Mount:
    """A bind mount of ``path`` as a message."""
    return mount_pb2.Mount(type="bind", source=str(path), options=["rbind", *options])


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid``, zombies included."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The fields after the command, which is in parentheses and may hold anything.
        if stat[stat.rindex(")") + 2 :].split()[1] == str(pid):
            found.add(int(entry))
    return found


def thread_count(pid: int) -> int:
    """How many threads process ``pid`` has."""
    return len(os.listdir(f"/proc/{pid}/task"))


def mounted_under(root: Path) -> list[str]:
    """The mount points at or below ``root`` (this process's mount namespace)."""
    prefix = str(root.resolve())
    return [p for p in mount_points() if p == prefix or p.startswith(prefix + "/")]


def free_port() -> int:
    """A TCP port on loopback that nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_local_server(
    work: Path, sections: str, *args: str, store: Path | None = None
) -> tuple[LayerdiffServer, LocalStore]:
    """A started ``layerdiff serve`` in ``work`` over a local store (``store``, else
    ``work/store``), its temporary mounts under ``work/mounts``, JSON logs at info, and
    the TOML ``sections`` added (processors, limits, metrics)."""
    store = store or work / "store"
    config = f"""
[content]
source = "local"
root = "{store}"

[mounts]
temp_root = "{work / "mounts"}"

[log]
level = "info"
format = "json"

{sections}"""
    server = LayerdiffServer(work, *args, config=config)
    server.start()
    return server, LocalStore(store)
