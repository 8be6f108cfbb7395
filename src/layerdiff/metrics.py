"""The server's metrics, in Prometheus's text form.

One ``Metrics`` per server, on its own registry, so that two servers in one process (as in
the tests) count apart. ``calls`` counts finished calls by method and gRPC code (errors are
the calls whose code is not OK); ``in_flight`` is the calls running now.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from layerdiff.errors import InvalidArgumentError, TargetError


class Metrics:
    """Counters, gauges and histograms of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "layerdiff_calls", "Finished calls, by method and gRPC status code.",
            ["method", "code"], registry=self.registry,
        )
        self.bytes = Counter(
            "layerdiff_bytes", "Bytes of blobs read (apply) and written (diff).",
            ["method"], registry=self.registry,
        )
        self.duration = Histogram(
            "layerdiff_call_duration_seconds", "How long calls took, by method.",
            ["method"], registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )
        self.in_flight = Gauge(
            "layerdiff_calls_in_flight", "Calls running now, by method.",
            ["method"], registry=self.registry,
        )

    @contextlib.contextmanager
    def call(self, method: str) -> Iterator[None]:
        """Count a call in flight and time it (its outcome is counted by ``finished``)."""
        gauge = self.in_flight.labels(method)
        gauge.inc()
        start = time.monotonic()
        try:
            yield
        finally:
            gauge.dec()
            self.duration.labels(method).observe(time.monotonic() - start)

    def finished(self, method: str, code: str, size: int = 0) -> None:
        """Count a finished call, and the bytes of its blob."""
        self.calls.labels(method, code).inc()
        if size:
            self.bytes.labels(method).inc(size)

    def serve_http(self, address: str) -> None:
        """Serve ``/metrics`` over HTTP on ``HOST:PORT`` (a daemon thread)."""
        host, _, port = address.rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            raise InvalidArgumentError(f"metrics address {address!r} is not HOST:PORT")
        try:
            start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1",
                              registry=self.registry)
        except OSError as err:
            raise TargetError(f"cannot serve metrics on {address}: {err.strerror or err}") from None
