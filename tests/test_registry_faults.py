"""RegistryClient when the network misbehaves: connections dropped mid-blob (resumed with
a range request), servers without range support, 5xx and 429 answers, redirects to
another host (which must not see the credentials)."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from layerdiff.errors import SourceError
from layerdiff.registry import Credentials, PermissionDeniedError, RegistryClient
from layerdiff.registry.blob import CHUNK
from tests.support.registry import FlakyProxy, Registry, digest_of, require_binary

DATA = os.urandom(3 * CHUNK + 1000)
NAME = "test/flaky"


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    require_binary()
    with Registry() as reg:
        RegistryClient(reg.host, insecure=True, credentials=None).push_blob(NAME, DATA)
        yield reg


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FlakyProxy]:
    with FlakyProxy(registry.host) as p:
        yield p


@pytest.fixture
def client(proxy: FlakyProxy) -> RegistryClient:
    return RegistryClient(proxy.host, insecure=True, credentials=None, retries=3, backoff=0.01)


def read_in_pieces(client: RegistryClient, size: int | None = len(DATA)) -> bytes:
    with client.open_blob(NAME, digest_of(DATA), size) as reader:
        return b"".join(iter(lambda: reader.read(64 << 10), b""))


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_dropped_download_resumes_with_a_range(
    client: RegistryClient, proxy: FlakyProxy, reset: bool
) -> None:
    proxy.drop_after(CHUNK + 12345, reset=reset)
    assert read_in_pieces(client) == DATA
    assert len(proxy.ranges) == 2 and proxy.ranges[0] == ""
    if reset:
        # The client's kernel drops what it had not read: it may even lose the headers,
        # and then it starts over.
        resumed = proxy.ranges[1].removeprefix("bytes=").removesuffix("-") or "0"
        assert 0 <= int(resumed) <= CHUNK + 12345
    else:
        assert proxy.ranges[1] == f"bytes={CHUNK + 12345}-"


def test_resume_without_known_size(client: RegistryClient, proxy: FlakyProxy) -> None:
    proxy.drop_after(777)
    assert read_in_pieces(client, None) == DATA
    assert proxy.ranges == ["", "bytes=777-"]


def test_no_range_support_fails_once_bytes_were_handed(
    client: RegistryClient, proxy: FlakyProxy
) -> None:
    proxy.strip_range = True
    proxy.drop_after(5000)
    with pytest.raises(SourceError) as info:
        read_in_pieces(client)
    message = str(info.value)
    assert proxy.host in message and f"/v2/{NAME}/blobs/{digest_of(DATA)}" in message
    assert "broke after 5000 bytes and cannot be resumed" in message


def test_no_range_support_starts_over_when_nothing_was_handed(
    client: RegistryClient, proxy: FlakyProxy
) -> None:
    proxy.strip_range = True
    proxy.drop_after(0)
    assert read_in_pieces(client) == DATA
    assert proxy.ranges == ["", ""]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_transient_statuses_are_retried(
    client: RegistryClient, proxy: FlakyProxy, status: int
) -> None:
    proxy.fail_with(status, times=2)
    assert read_in_pieces(client) == DATA
    assert len(proxy.ranges) == 3


def test_retries_run_out(client: RegistryClient, proxy: FlakyProxy) -> None:
    proxy.fail_with(503, times=4)
    with pytest.raises(SourceError) as info:
        read_in_pieces(client)
    message = str(info.value)
    assert proxy.host in message and f"GET /v2/{NAME}/blobs/" in message
    assert "failed after 4 attempts" in message and "HTTP 503" in message


def test_retry_after_is_honoured(client: RegistryClient, proxy: FlakyProxy) -> None:
    # Retry-After in the past as an HTTP date: no wait, but it must parse.
    proxy.fail_with(429, times=1, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    assert read_in_pieces(client) == DATA


def test_fault_mid_resume_is_retried_too(client: RegistryClient, proxy: FlakyProxy) -> None:
    proxy.drop_after(100)
    proxy.fail_with(503, times=1)
    # The 503 takes the first download; the drop the second; the third resumes.
    assert read_in_pieces(client) == DATA
    assert proxy.ranges[:2] == ["", ""] and proxy.ranges[2].startswith("bytes=")


class _Servers:
    """A front that wants basic auth and redirects blob downloads to a separate store."""

    def __init__(self, user: str, password: str) -> None:
        self.store_saw_authorization: list[str | None] = []
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        servers = self

        class Store(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                servers.store_saw_authorization.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Length", str(len(DATA)))
                self.end_headers()
                self.wfile.write(DATA)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Front(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="front"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(307)
                self.send_header("Location", f"{servers.store_url}/data?sig=x")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.store = ThreadingHTTPServer(("127.0.0.1", 0), Store)
        self.front = ThreadingHTTPServer(("127.0.0.1", 0), Front)
        self.store_url = f"http://127.0.0.1:{self.store.server_address[1]}"
        self.front_host = f"127.0.0.1:{self.front.server_address[1]}"
        self.threads = [
            threading.Thread(target=s.serve_forever, daemon=True) for s in (self.store, self.front)
        ]


@pytest.fixture
def servers() -> Iterator[_Servers]:
    s = _Servers("bob", "pw")
    for thread in s.threads:
        thread.start()
    yield s
    for server in (s.store, s.front):
        server.shutdown()
        server.server_close()


def test_redirect_to_another_host_drops_credentials(servers: _Servers) -> None:
    client = RegistryClient(servers.front_host, insecure=True, credentials=Credentials("bob", "pw"))
    with client.open_blob(NAME, digest_of(DATA), len(DATA)) as reader:
        assert reader.read() == DATA
    assert servers.store_saw_authorization == [None]


def test_basic_auth_wrong_password(servers: _Servers) -> None:
    client = RegistryClient(servers.front_host, insecure=True, credentials=Credentials("bob", "x"))
    with pytest.raises(PermissionDeniedError, match="denied repository:test/flaky:pull to user"):
        client.open_blob(NAME, digest_of(DATA))


def test_basic_auth_without_credentials(servers: _Servers) -> None:
    client = RegistryClient(servers.front_host, insecure=True, credentials=None)
    with pytest.raises(PermissionDeniedError, match="requires credentials"):
        client.open_blob(NAME, digest_of(DATA))
