"""``layerdiff serve``: containerd's Diff API over gRPC, with health and metrics.

The servicer turns messages into ``service`` requests and answers into messages; it knows
nothing about tar or mounts. Each call gets a cancel token that fires when the client goes
away or the deadline (the client's, or the configured limit) passes, so that the work
stops and its ordinary error paths clean up. At most ``concurrency`` calls work at once;
the others wait their turn (still cancellable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from types import FrameType
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from layerdiff.api import diff_pb2, diff_pb2_grpc
from layerdiff.api.convert import (
    descriptor_from_proto,
    descriptor_to_proto,
    mount_from_proto,
    source_date_epoch,
)
from layerdiff.api.status import abort, code_for
from layerdiff.cancel import CancelToken
from layerdiff.content.containerd import ContainerdContent
from layerdiff.content.local import LocalStore
from layerdiff.content.remote import LEASE_HEADER, NAMESPACE_HEADER
from layerdiff.content.store import Store
from layerdiff.errors import InvalidArgumentError, TargetError
from layerdiff.metrics import Metrics
from layerdiff.service import ApplyRequest, DiffRequest, DiffService

log = logging.getLogger("layerdiff.server")

DIFF_SERVICE_NAME = "containerd.services.diff.v1.Diff"


class ContentSource(Protocol):
    """The content stores served calls use, given the call's namespace and lease
    (empty when the caller sent none)."""

    def for_apply(self, namespace: str, lease: str, digest: str) -> Store:
        """Where an Apply reads the blob ``digest``."""

    def for_diff(self, namespace: str, lease: str) -> Store:
        """Where a Diff writes its layer."""

    def published(self, namespace: str, digest: str) -> None:
        """Called after a Diff committed ``digest``."""


@dataclass(frozen=True)
class Limits:
    """How much work the server takes on."""

    concurrency: int = 4
    #: Seconds an Apply or Diff may run (``None``: only the client's deadline).
    apply_timeout: float | None = None
    diff_timeout: float | None = None


class LocalContent:
    """One local store for every call (a store of our own has no namespaces)."""

    def __init__(self, root: str) -> None:
        self._store = LocalStore(root)

    def for_apply(self, namespace: str, lease: str, digest: str) -> Store:
        """The local store."""
        return self._store

    def for_diff(self, namespace: str, lease: str) -> Store:
        """The local store."""
        return self._store

    def published(self, namespace: str, digest: str) -> None:
        """Nothing to do: the blob is where every caller looks."""


def containerd_content(address: str, fallback_namespace: str = "default") -> ContainerdContent:
    """containerd's Content service at ``address`` (``unix:///PATH``)."""
    channel = grpc.insecure_channel(_grpc_target(address))
    return ContainerdContent(channel, fallback_namespace=fallback_namespace)


class DiffServicer(diff_pb2_grpc.DiffServicer):
    """``containerd.services.diff.v1.Diff`` in front of a ``DiffService``."""

    def __init__(
        self, service: DiffService, content: ContentSource, limits: Limits, metrics: Metrics
    ) -> None:
        self._service = service
        self._content = content
        self._limits = limits
        self._metrics = metrics
        self._slots = threading.BoundedSemaphore(limits.concurrency)
        self._tokens: set[CancelToken] = set()
        self._tokens_lock = threading.Lock()

    def Apply(
        self, request: diff_pb2.ApplyRequest, context: grpc.ServicerContext
    ) -> diff_pb2.ApplyResponse:
        """Apply a blob from the content store onto the mounts."""
        digest = request.diff.digest
        with self._call("Apply", context, digest, self._limits.apply_timeout) as call:
            desc = descriptor_from_proto(request.diff)
            store = self._content.for_apply(call.namespace, call.lease, desc.digest)
            applied = self._service.apply(ApplyRequest(
                desc=desc,
                mounts=[mount_from_proto(m) for m in request.mounts],
                store=store,
                payloads={k: v.SerializeToString() for k, v in request.payloads.items()},
                sync_fs=request.sync_fs,
                cancel=call.token,
            ))
            call.size = desc.size
            call.result = applied.digest
        return diff_pb2.ApplyResponse(applied=descriptor_to_proto(applied))

    def Diff(
        self, request: diff_pb2.DiffRequest, context: grpc.ServicerContext
    ) -> diff_pb2.DiffResponse:
        """Compute the layer between two mount lists and commit it to the content store."""
        with self._call("Diff", context, "", self._limits.diff_timeout) as call:
            store = self._content.for_diff(call.namespace, call.lease)
            desc = self._service.compare(DiffRequest(
                lower=[mount_from_proto(m) for m in request.left],
                upper=[mount_from_proto(m) for m in request.right],
                store=store,
                media_type=request.media_type,
                ref=request.ref,
                labels=dict(request.labels),
                source_date_epoch=source_date_epoch(request),
                cancel=call.token,
            ))
            self._content.published(call.namespace, desc.digest)
            call.size = desc.size
            call.result = desc.digest
        return diff_pb2.DiffResponse(diff=descriptor_to_proto(desc))

    def cancel_all(self) -> None:
        """Ask every call in flight to stop (shutdown)."""
        with self._tokens_lock:
            for token in self._tokens:
                token.cancel()

    @contextlib.contextmanager
    def _call(
        self, method: str, context: grpc.ServicerContext, digest: str, limit: float | None
    ) -> Iterator[_Call]:
        headers = dict(context.invocation_metadata())
        remaining = context.time_remaining()
        timeouts = [t for t in (limit, remaining) if t is not None]
        call = _Call(
            namespace=str(headers.get(NAMESPACE_HEADER, "")),
            lease=str(headers.get(LEASE_HEADER, "")),
            token=CancelToken(min(timeouts) if timeouts else None),
        )
        context.add_callback(call.token.cancel)  # fires when the RPC ends, however it ends
        fields = {"method": method, "namespace": call.namespace, "digest": digest}
        start = time.monotonic()
        with (
            self._released(call.token),
            self._tracked(call.token),
            self._metrics.call(method),
        ):
            try:
                self._wait_for_slot(call.token)
                try:
                    yield call
                finally:
                    self._slots.release()
            except Exception as err:
                code = code_for(err)
                self._metrics.finished(method, code.name)
                log.warning("%s failed: %s", method, err, extra={
                    **fields, "code": code.name, "duration": round(time.monotonic() - start, 3),
                }, exc_info=code is grpc.StatusCode.INTERNAL)
                abort(context, err)
        self._metrics.finished(method, "OK", call.size)
        log.info("%s done", method, extra={
            **fields, "digest": digest or call.result, "code": "OK", "size": call.size,
            "duration": round(time.monotonic() - start, 3),
        })

    @staticmethod
    @contextlib.contextmanager
    def _released(token: CancelToken) -> Iterator[None]:
        try:
            yield
        finally:
            token.release()

    @contextlib.contextmanager
    def _tracked(self, token: CancelToken) -> Iterator[None]:
        with self._tokens_lock:
            self._tokens.add(token)
        try:
            yield
        finally:
            with self._tokens_lock:
                self._tokens.discard(token)

    def _wait_for_slot(self, token: CancelToken) -> None:
        while not self._slots.acquire(timeout=0.1):
            token.check()
        try:
            token.check()
        except BaseException:
            self._slots.release()
            raise


@dataclass
class _Call:
    namespace: str
    lease: str
    token: CancelToken
    size: int = 0
    result: str = ""


class Server:
    """A gRPC server on a unix socket: the Diff service, health, and optional metrics."""

    def __init__(
        self,
        address: str,
        service: DiffService,
        content: ContentSource,
        limits: Limits | None = None,
        *,
        metrics_address: str | None = None,
    ) -> None:
        self.path = _socket_path(address)
        self.limits = limits or Limits()
        self.metrics = Metrics()
        self._metrics_address = metrics_address
        self.servicer = DiffServicer(service, content, self.limits, self.metrics)
        # Room for health checks while every slot is busy.
        workers = self.limits.concurrency + 4
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
        diff_pb2_grpc.add_DiffServicer_to_server(self.servicer, self._grpc)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        self._stopped = threading.Event()

    def start(self) -> None:
        """Listen on the socket (a stale one left by a crash is replaced)."""
        _remove_stale_socket(self.path)
        # Before the socket: a metrics address in use must not leave a socket behind.
        if self._metrics_address:
            self.metrics.serve_http(self._metrics_address)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        if self._grpc.add_insecure_port(f"unix:{self.path}") == 0:
            raise TargetError(f"cannot listen on {self.path}")
        self._grpc.start()
        for name in ("", DIFF_SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on unix://%s", DIFF_SERVICE_NAME, self.path)

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new calls, give calls in flight ``grace`` seconds, cancel the rest,
        and remove the socket."""
        if self._stopped.is_set():
            return
        for name in ("", DIFF_SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        done = self._grpc.stop(grace)
        if not done.wait(grace):
            self.servicer.cancel_all()
        self.servicer.cancel_all()  # anything still running past the grace
        done.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._stopped.set()
        log.info("stopped")

    def wait(self) -> None:
        """Block until ``stop`` has finished."""
        self._stopped.wait()

    def run_until_signalled(self, grace: float = 10.0) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully."""
        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            threading.Thread(target=self.stop, args=(grace,), daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        self.wait()


def _grpc_target(address: str) -> str:
    if address.startswith("unix://"):
        return "unix:" + address[len("unix://"):]
    if address.startswith("/"):
        return "unix:" + address
    return address


def _socket_path(address: str) -> str:
    if address.startswith("unix://"):
        address = address[len("unix://"):]
    elif address.startswith("unix:"):
        address = address[len("unix:"):]
    if not address.startswith("/"):
        raise InvalidArgumentError(f"the address must be unix:///ABSOLUTE/PATH, not {address!r}")
    return address


def _remove_stale_socket(path: str) -> None:
    """Remove a socket nobody listens on; refuse to touch a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidArgumentError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise InvalidArgumentError(f"another server is listening on {path}")
