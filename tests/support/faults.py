"""Producing faults for the fault tests: small file systems that fill up, a stream
processor that holds a call mid-way until the test lets it go, a server that can be
SIGKILLed and restarted, a client in a process of its own, and views of a server
process from /proc (threads, children, mounts)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from layerdiff.content.local import LocalStore
from layerdiff.mount.temp import PREFIX
from layerdiff.oci import MEDIA_TYPE_LAYER
from tests.support.serve import (
    LayerdiffServer,
    mounted_under,
    start_local_server,
    thread_count,
)

#: The media type the gate processor accepts (it yields plain tar).
GATED = "application/vnd.layerdiff.test.gated"
#: The media type the hanging processor accepts: the gate, with a time limit.
HANGING = "application/vnd.layerdiff.test.hanging"
#: Seconds the hanging processor may run.
HANG_LIMIT = 1
#: Bounds on waits for the server (never reached when things work).
WAIT = 60.0

# Passes its input on; after exactly ``hold_after`` bytes, if ``<events>.hold`` exists,
# records "holding PID" and waits until the file is gone. Records "start PID", "end PID".
GATE_PROCESSOR = """\
import os, sys, time

events, hold_after = sys.argv[1], int(sys.argv[2])

def event(what):
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{what} {os.getpid()}\\n".encode())
    os.close(fd)

event("start")
passed, held = 0, False
def chunk():
    return 65536 if passed >= hold_after else min(65536, hold_after - passed)

while data := sys.stdin.buffer.read(chunk()):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    passed += len(data)
    if passed >= hold_after and not held and os.path.exists(events + ".hold"):
        held = True
        event("holding")
        while os.path.exists(events + ".hold"):
            time.sleep(0.01)
event("end")
"""

# Calls Apply or Diff with a serialized request, and waits for the answer.
CLIENT = """\
import sys
import grpc
from layerdiff.api import diff_pb2, diff_pb2_grpc

socket, method, request = sys.argv[1], sys.argv[2], open(sys.argv[3], "rb").read()
with grpc.insecure_channel("unix:" + socket) as channel:
    stub = diff_pb2_grpc.DiffStub(channel)
    message = getattr(diff_pb2, method + "Request").FromString(request)
    getattr(stub, method)(message, timeout=600)
"""


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount(8)'s form: ``1m``) mounted on ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def ext4_image(path: Path, size: str) -> Path:
    """An empty ext4 file system of ``size`` in the file ``path``."""
    subprocess.run(["truncate", "-s", size, str(path)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(path)], check=True)
    return path


@contextlib.contextmanager
def small_ext4(image: Path, path: Path, size: str) -> Iterator[Path]:
    """A loop-mounted ext4 of ``size`` (its image in ``image``) on ``path``."""
    ext4_image(image, size)
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


def loop_devices(image: Path) -> list[str]:
    """The loop devices backed by ``image``."""
    found = subprocess.run(["losetup", "-j", str(image)], check=True, capture_output=True,
                           text=True).stdout
    return [line.split(":")[0] for line in found.splitlines()]


@dataclass
class FaultServer:
    """A ``layerdiff serve`` over a local store, with the gate and hanging processors."""

    server: LayerdiffServer
    store: LocalStore
    mounts: Path  # [mounts] temp_root
    events: Path  # what the gate processor records

    @property
    def hold(self) -> Path:
        """While this file exists, the gate processor holds its call."""
        return Path(f"{self.events}.hold")

    def recorded(self, what: str) -> list[int]:
        """PIDs of the gate processors that recorded ``what``."""
        if not self.events.exists():
            return []
        return [int(pid) for w, pid in (line.split() for line in self.events.read_text()
                                        .splitlines()) if w == what]

    def leftovers(self) -> list[str]:
        """Temporary mounts and mount points under temp_root."""
        return mounted_under(self.mounts) + sorted(
            p.name for p in self.mounts.iterdir() if p.name.startswith(PREFIX))

    def threads(self) -> int:
        """The server's thread count."""
        return thread_count(self.server.pid)

    def kill(self, *others: int) -> None:
        """SIGKILL the server's process group and ``others``, as a crash would end them."""
        process = self.server.process
        assert process is not None
        os.killpg(process.pid, signal.SIGKILL)
        for pid in others:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(WAIT)
        self.server.process = None

    def close(self) -> None:
        """Stop the server (if running) and release the store."""
        self.hold.unlink(missing_ok=True)
        self.store.close()
        if self.server.process is not None:
            self.server.stop()


def start_fault_server(work: Path, *, store: Path | None = None,
                       hold_after: int = 0) -> FaultServer:
    """A server in ``work`` (its store in ``store`` if given): the gate processor holds
    after ``hold_after`` bytes."""
    work.mkdir(parents=True, exist_ok=True)
    script = work / "gate_processor.py"
    script.write_text(GATE_PROCESSOR)
    events = work / "events"
    args = f'["{script}", "{events}", "{hold_after}"]'
    server, local = start_local_server(work, f"""
[stream_processors.gate]
accepts = ["{GATED}"]
returns = "{MEDIA_TYPE_LAYER}"
path = "{sys.executable}"
args = {args}

[stream_processors.hanging]
accepts = ["{HANGING}"]
returns = "{MEDIA_TYPE_LAYER}"
path = "{sys.executable}"
args = {args}
timeout = {HANG_LIMIT}
""", store=store)
    return FaultServer(server, local, work / "mounts", events)


def start_client(work: Path, socket: Path, method: str, request: bytes) -> subprocess.Popen[bytes]:
    """A client process calling ``method`` with the serialized ``request``."""
    script, message = work / "client.py", work / f"{method}.request"
    script.write_text(CLIENT)
    message.write_bytes(request)
    return subprocess.Popen([sys.executable, str(script), str(socket), method, str(message)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
