"""Stream processors: the chain that turns a layer blob of any media type into a plain tar.

As containerd's ``diff/stream.go``: handlers are asked in turn whether they accept a media
type, the last registered first, so configured processors come before the built-in
compression handler. The accepting handler opens a stage that reads the stream and yields
another media type; stages are chained until one yields
``application/vnd.oci.image.layer.v1.tar``.

An external processor runs as containerd runs it: the stream on stdin, the result on
stdout, ``STREAM_PROCESSOR_MEDIATYPE`` in its environment and, when the caller has a
payload for its ID, that payload on file descriptor 3. Unlike containerd, layerdiff waits
for its exit status before the stream counts as finished, names the processor in every
error, can kill it after a time limit, and kills its whole process group when the chain
is closed, so no child is ever left running.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from layerdiff.compression import CHUNK_SIZE, Readable, decompressed_chunks
from layerdiff.errors import (
    CanceledError,
    DeadlineExceededError,
    ProcessorError,
    UnsupportedError,
)
from layerdiff.oci import MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_LAYER

if TYPE_CHECKING:  # the configuration (and tomllib) only when a processor is configured
    from layerdiff.config import StreamProcessorConfig

MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
MEDIA_TYPE_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"

#: The environment variable that tells an external processor the media type it is fed.
MEDIA_TYPE_ENV = "STREAM_PROCESSOR_MEDIATYPE"
#: The descriptor on which an external processor finds its payload.
PAYLOAD_FD = 3
#: containerd chains without limit; a processor returning a type it accepts would loop.
MAX_STAGES = 16

_STDERR_KEEP = 2048  # bytes of a processor's stderr kept for the error message (the tail)
_KILL_WAIT_SECONDS = 5.0  # SIGKILL is prompt unless the process is stuck in the kernel
_STDERR_WAIT_SECONDS = 1.0

log = logging.getLogger("layerdiff.processors")


class Stage(Protocol):
    """One link of the chain: iterating it yields the stream converted to ``media_type``."""

    @property
    def media_type(self) -> str:
        """The media type of what the stage yields."""
        ...

    def __iter__(self) -> Iterator[bytes]:
        """The converted stream, in non-empty chunks."""
        ...

    def close(self) -> None:
        """Release what the stage holds (processes, descriptors); idempotent."""
        ...


#: Opens a stage over the stream of the accepted media type, given the payloads by ID.
StageOpener = Callable[[Readable, Mapping[str, bytes]], Stage]
#: Asked with a media type: how to open a stage for it, or ``None`` if not accepted.
Handler = Callable[[str], StageOpener | None]


# ------------------------------------------------------------------ the built-in handler


def diff_compression(media_type: str) -> str | None:
    """containerd's ``images.DiffCompression``: the compression a layer media type names.

    ``"gzip"``, ``"zstd"``, ``"unknown"`` (docker's plain tar type, often compressed
    anyway), ``""`` (not compressed, or wrapped in something another processor undoes) or
    ``None`` when the media type is not a layer type at all.
    """
    base, plus, ext = media_type.partition("+")
    # As containerd's parseMediaTypes: suffixes sorted, so only the last in sort order
    # counts ("tar+gzip+encrypted" reads as gzip).
    suffixes = sorted(ext.split("+", 49)) if plus else []
    if base in (MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_DOCKER_LAYER_FOREIGN):
        return "" if suffixes else "unknown"
    if base in (MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP):
        return "" if suffixes else "gzip"
    if base in (MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_NONDISTRIBUTABLE):
        return suffixes[-1] if suffixes and suffixes[-1] in ("gzip", "zstd") else ""
    return None


class DecompressStage:
    """The built-in stage: decompresses (gzip or zstd, detected from the magic bytes, as
    containerd's ``DecompressStream``) or passes the stream through unchanged."""

    media_type = MEDIA_TYPE_LAYER

    def __init__(self, stream: Readable, *, decompress: bool) -> None:
        self._stream = stream
        self._decompress = decompress

    def __iter__(self) -> Iterator[bytes]:
        if self._decompress:
            return decompressed_chunks(self._stream)
        return iter(lambda: self._stream.read(CHUNK_SIZE), b"")

    def close(self) -> None:
        """Nothing to release: the stream belongs to the caller."""


def compressed_handler(media_type: str) -> StageOpener | None:
    """Accepts every docker and OCI layer media type, as containerd's built-in handler.

    A compressed type, or docker's plain ``tar`` type, is decompressed by magic bytes; an
    OCI ``tar`` type, or any type with a suffix other than ``gzip``/``zstd``, is passed
    through as plain tar: configured processors are asked first, so those suffixes are
    for them to undo.
    """
    kind = diff_compression(media_type)
    if kind is None:
        return None
    decompress = kind != ""

    def open_stage(stream: Readable, payloads: Mapping[str, bytes]) -> Stage:
        return DecompressStage(stream, decompress=decompress)

    return open_stage


# ------------------------------------------------------------------------- the registry


class ProcessorRegistry:
    """Handlers asked in turn, the last registered first (so configured ones come before
    the built-in compression handler, which every new registry starts with)."""

    def __init__(self, handlers: Iterable[Handler] = (compressed_handler,)) -> None:
        self._handlers = list(handlers)

    @classmethod
    def from_config(cls, processors: Mapping[str, StreamProcessorConfig]) -> ProcessorRegistry:
        """The built-in handler plus the configured processors, asked in file order.

        (containerd registers them in Go's random map order; a fixed order is kinder.)
        """
        registry = cls()
        for spec in reversed(list(processors.values())):
            registry.register(binary_handler(spec))
        return registry

    def register(self, handler: Handler) -> None:
        """Add ``handler``; it is asked before every handler registered so far."""
        self._handlers.append(handler)

    def lookup(self, media_type: str) -> StageOpener:
        """The opener of the first handler that accepts ``media_type``."""
        for handler in reversed(self._handlers):
            opener = handler(media_type)
            if opener is not None:
                return opener
        raise UnsupportedError(f"no stream processor for media type {media_type!r}")


# ---------------------------------------------------------------- external processors


def binary_handler(spec: StreamProcessorConfig) -> Handler:
    """A handler running the external program ``spec`` for the media types it accepts."""
    accepts = frozenset(spec.accepts)

    def handler(media_type: str) -> StageOpener | None:
        if media_type not in accepts:
            return None

        def open_stage(stream: Readable, payloads: Mapping[str, bytes]) -> Stage:
            return BinaryStage(spec, media_type, stream, payloads.get(spec.id))

        return open_stage

    return handler


class BinaryStage:
    """A running external processor, fed ``stream`` by a thread, read by the iterator.

    The process runs in its own session, so the whole group (helpers it forked included)
    can be killed. It stays unreaped (a zombie) until ``close``, so that its process
    group ID cannot be reused by an unrelated process before the group is killed.
    """

    def __init__(
        self,
        spec: StreamProcessorConfig,
        media_type: str,
        stream: Readable,
        payload: bytes | None,
    ) -> None:
        self.media_type = spec.returns
        self._spec = spec
        self._lock = threading.Lock()
        self._exited = threading.Event()
        self._exit = (-1, 0)  # (si_code, si_status) of the exit; -1: status unknown
        self._reaped = False
        self._gave_up = False  # close() stopped waiting; the waiter thread reaps
        self._timed_out = False
        self._closing = False
        self._reading = False
        self._stdout_closed = False
        self._feed_error: Exception | None = None
        self._stderr = bytearray()

        executable = spec.path if "/" in spec.path else shutil.which(spec.path)
        if executable is None:
            raise ProcessorError(f"stream processor {spec.id!r}: {spec.path!r} not found in PATH")
        env = dict(os.environ)
        for item in spec.env:
            name, _, value = item.partition("=")
            env[name] = value
        env[MEDIA_TYPE_ENV] = media_type

        parent_fds: list[int] = []  # ours to keep: stdin writer, stdout and stderr readers
        child_fds: dict[int, int] = {}  # target descriptor in the child -> its source here
        payload_w: int | None = None
        try:
            for target in (0, 1, 2):
                r, w = os.pipe()
                theirs, ours = (r, w) if target == 0 else (w, r)
                parent_fds.append(ours)
                child_fds[target] = _above_stdio(theirs)
            if payload is not None:
                r, payload_w = os.pipe()
                child_fds[PAYLOAD_FD] = _above_stdio(r)
            self.pid = os.posix_spawn(
                executable,
                [spec.path, *spec.args],
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, fd, t) for t, fd in child_fds.items()],
                setsid=True,
                setsigmask=(),
                # Python ignores SIGPIPE; a child must not inherit that.
                setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            )
        except OSError as err:
            for fd in [*parent_fds, *child_fds.values()]:
                os.close(fd)
            if payload_w is not None:
                os.close(payload_w)
            raise ProcessorError(
                f"stream processor {spec.id!r}: cannot run {spec.path!r}: {err.strerror or err}"
            ) from None
        for fd in child_fds.values():
            os.close(fd)
        stdin_w, self._stdout, stderr_r = parent_fds

        self._start(self._wait, "wait")
        self._feeder = self._start(lambda: self._feed(stream, stdin_w), "feed")
        self._stderr_thread = self._start(lambda: self._drain_stderr(stderr_r), "stderr")
        if payload_w is not None and payload is not None:
            payload_fd, data = payload_w, payload
            self._start(lambda: _write_all(payload_fd, data), "payload")
        self._timer: threading.Timer | None = None
        if spec.timeout is not None:
            self._timer = threading.Timer(spec.timeout, self._on_timeout)
            self._timer.name = f"processor-{spec.id}-timer"
            self._timer.daemon = True
            self._timer.start()

    def _start(self, target: Callable[[], None], what: str) -> threading.Thread:
        thread = threading.Thread(
            target=target, name=f"processor-{self._spec.id}-{what}", daemon=True
        )
        thread.start()
        return thread

    # Threads. Each owns its descriptor and closes it: closing a descriptor another
    # thread is blocked on would let its number be reused under that thread's feet.

    def _wait(self) -> None:
        try:
            result = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:  # some other code of this process reaped it (os.wait())
            result = None
        with self._lock:
            if result is None:
                self._reaped = True
            else:
                self._exit = (result.si_code, result.si_status)
            self._exited.set()
            if self._gave_up and not self._reaped:
                self._reap_locked()

    def _feed(self, stream: Readable, fd: int) -> None:
        try:
            while chunk := stream.read(CHUNK_SIZE):
                _write_view(fd, memoryview(chunk))
        except BrokenPipeError:
            pass  # the processor stopped reading its input: its output and status decide
        except Exception as err:  # the stream failed upstream; reported at the end
            self._feed_error = err
        finally:
            os.close(fd)

    def _drain_stderr(self, fd: int) -> None:
        try:
            while data := os.read(fd, 65536):
                self._stderr += data
                del self._stderr[:-_STDERR_KEEP]
        finally:
            os.close(fd)

    def _on_timeout(self) -> None:
        with self._lock:
            if not self._exited.is_set():
                self._timed_out = True
                self._kill_group_locked()

    # The reader.

    def __iter__(self) -> Iterator[bytes]:
        return self._read()

    def _read(self) -> Iterator[bytes]:
        with self._lock:
            if self._stdout_closed:
                raise CanceledError(f"stream processor {self._spec.id!r} was stopped")
            self._reading = True
        try:
            while chunk := os.read(self._stdout, CHUNK_SIZE):
                yield chunk
            self._check_exit()
        finally:
            os.close(self._stdout)

    def _check_exit(self) -> None:
        # The output ended; it counts only once the process has exited with success.
        # Without a time limit this waits as long as the process runs (until close()).
        self._exited.wait()
        with self._lock:
            self._kill_group_locked()  # helpers it left would hold stderr open
        self._stderr_thread.join(_STDERR_WAIT_SECONDS)
        name = f"stream processor {self._spec.id!r}"
        if self._timed_out:
            raise DeadlineExceededError(
                f"{name} ran past its time limit of {self._spec.timeout:g}s and was killed"
            )
        if self._closing:
            raise CanceledError(f"{name} was stopped")
        if self._feed_error is not None:
            raise self._feed_error
        code, status = self._exit
        if code == os.CLD_EXITED and status == 0:
            return
        if code == os.CLD_EXITED:
            failure = f"{name} failed with exit status {status}"
        elif code == -1:
            failure = f"{name} was reaped by someone else; its exit status is unknown"
        else:
            failure = f"{name} was killed by {_signal_name(status)}"
        detail = self._stderr_text()
        raise ProcessorError(f"{failure}: {detail}" if detail else failure)

    def _stderr_text(self) -> str:
        text = bytes(self._stderr).decode("utf-8", "replace")
        return "; ".join(line.strip() for line in text.splitlines() if line.strip())

    # Ending.

    def close(self) -> None:
        """Kill the process group (if anything still runs in it) and reap the process."""
        with self._lock:
            if not self._reading and not self._stdout_closed:
                os.close(self._stdout)
            self._stdout_closed = True
            if self._reaped or self._gave_up:
                return
            if not self._exited.is_set():
                self._closing = True
            self._kill_group_locked()
        if self._timer is not None:
            self._timer.cancel()
        exited = self._exited.wait(_KILL_WAIT_SECONDS)
        with self._lock:
            if exited:
                self._reap_locked()
            else:
                self._gave_up = True
                log.warning("processor %r (pid %d) outlived SIGKILL", self._spec.id, self.pid)
        # The feeder may still be reading the caller's stream; it must be done with it
        # before the caller closes it. Once the process is gone its writes fail at once,
        # so only an upstream read that blocks can keep it.
        self._feeder.join(_KILL_WAIT_SECONDS)

    def _kill_group_locked(self) -> None:
        # Safe only while the leader is unreaped: its pid is then still the group's ID.
        if not self._reaped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)

    def _reap_locked(self) -> None:
        if self._reaped:
            return
        self._kill_group_locked()
        os.waitpid(self.pid, 0)
        self._reaped = True


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _above_stdio(fd: int) -> int:
    """``fd`` moved above 3 if needed, so that no dup2 in the child overwrites a source."""
    if fd > PAYLOAD_FD:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, PAYLOAD_FD + 1)
    os.close(fd)
    return moved


def _write_view(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def _write_all(fd: int, data: bytes) -> None:
    try:
        _write_view(fd, memoryview(data))
    except BrokenPipeError:
        pass  # the processor exited without reading its payload
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- the chain


class _ChunkStream:
    """An iterator of chunks read as a stream: what the next stage reads from."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes (a negative size: the next chunk); ``b""`` at the end."""
        if not self._pending:
            self._pending = next(self._chunks, b"")
        if size < 0 or size >= len(self._pending):
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:size], self._pending[size:]
        return out


class ProcessorChain:
    """The stages from a blob's media type to plain tar; iterate it for the tar stream.

    Use as a context manager, or call ``close``: it kills and reaps every processor still
    running, whether the stream was read to the end, failed, or was abandoned; ``close``
    may be called from another thread to cancel.
    """

    def __init__(
        self,
        media_type: str,
        stream: Readable,
        processors: ProcessorRegistry | None = None,
        payloads: Mapping[str, bytes] | None = None,
    ) -> None:
        registry = processors or ProcessorRegistry()
        payloads = payloads or {}
        self.stages: list[Stage] = []
        current_type, current = media_type, stream
        try:
            while True:
                if len(self.stages) == MAX_STAGES:
                    raise UnsupportedError(
                        f"media type {media_type!r} needs more than {MAX_STAGES} stream "
                        "processors (does one return a media type it accepts?)"
                    )
                try:
                    opener = registry.lookup(current_type)
                except UnsupportedError:
                    if current_type == media_type:
                        raise
                    raise UnsupportedError(
                        f"no stream processor for media type {current_type!r} "
                        f"(from layer media type {media_type!r})"
                    ) from None
                stage = opener(current, payloads)
                self.stages.append(stage)
                if stage.media_type == MEDIA_TYPE_LAYER:
                    break
                current_type, current = stage.media_type, _ChunkStream(iter(stage))
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.stages[-1])

    def close(self) -> None:
        """Stop every stage; idempotent.

        The first goes first: its end is the end of the next one's input, so each stage
        finds its feeder already done.
        """
        for stage in self.stages:
            stage.close()

    def __enter__(self) -> ProcessorChain:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
