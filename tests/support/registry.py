"""A real registry (Debian's ``docker-registry``, the CNCF distribution registry) on
loopback for the registry client's tests, with what it needs around it:

- ``Registry``: ``docker-registry serve`` with a private storage folder and config, on
  a free port; optionally with token auth.
- ``TokenServer``: a tiny token server (Docker's token protocol) that checks basic
  credentials and issues ES256 JWTs; the registry trusts its self-signed certificate.
- ``FlakyProxy``: a TCP proxy that injects one fault into the next blob download (a
  connection dropped after N body bytes, or an error status), and can hide range support.

The binary comes from ``.ci/fetch-registry``.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import datetime
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.serve import free_port

DEFAULT_BIN = Path("/var/cache/layerdiff-ci/registry/root/usr/bin/docker-registry")
STARTUP_TIMEOUT = 30.0
SERVICE = "layerdiff-test-registry"
ISSUER = "layerdiff-test-token-server"
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def binary() -> Path:
    """Where docker-registry is: $LAYERDIFF_REGISTRY_BIN or the CI's cache."""
    return Path(os.environ.get("LAYERDIFF_REGISTRY_BIN") or DEFAULT_BIN)


def require_binary() -> None:
    """Skip the calling test (fail it when CI=true) if docker-registry is missing."""
    if os.access(binary(), os.X_OK):
        return
    message = (
        f"docker-registry not found at {binary()}: run .ci/fetch-registry "
        "(or point LAYERDIFF_REGISTRY_BIN at the binary)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)  # CI fetches it: its absence is a broken setup
    pytest.skip(message)


def digest_of(data: bytes) -> str:
    """The sha256 digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _die_with_parent() -> None:
    # Between fork and exec: the registry gets SIGTERM if the test process dies.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """Docker's token protocol on loopback: ``GET /token?service=&scope=`` with basic auth.

    ``users`` maps names to passwords. A known user gets every action it asks for; a
    wrong password gets 401; anonymous requests get a token granting nothing. ``issued``
    counts the tokens given. OAuth's ``POST`` form is answered 405, which tells clients
    that try it first (containerd) to fall back to ``GET``.
    """

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.issued = 0
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = server._answer(self.path, self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.send_response(405)
                self.send_header("Allow", "GET")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self._httpd.server_address[1]}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def certificate_pem(self) -> bytes:
        """The self-signed certificate the registry must trust (its root bundle)."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def _answer(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        subject = ""
        if authorization:
            scheme, _, encoded = authorization.partition(" ")
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            if scheme.lower() != "basic" or self.users.get(user) != password:
                return 401, b'{"details": "wrong user name or password"}'
            subject = user
        access: list[dict[str, object]] = []
        for scope in query.get("scope", []) if subject else []:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        token = self._jwt(subject, access)
        with self._lock:
            self.issued += 1
        return 200, json.dumps({"token": token, "expires_in": 300}).encode()

    def _jwt(self, subject: str, access: list[dict[str, object]]) -> str:
        now = int(time.time())
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        # JWS wants ES256 signatures as the raw 32-byte r and s, not DER.
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class Registry:
    """``docker-registry serve`` on ``127.0.0.1`` with private storage; a context manager.

    ``host`` is ``127.0.0.1:PORT``; ``storage`` the filesystem driver's root folder.
    """

    def __init__(self, token_server: TokenServer | None = None) -> None:
        self._token_server = token_server
        self._dir = Path(tempfile.mkdtemp(prefix="layerdiff-registry-"))
        self.storage = self._dir / "storage"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps blob ``digest``'s bytes."""
        hex_ = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def _config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if self._token_server is not None:
            bundle = self._dir / "token-root.pem"
            bundle.write_bytes(self._token_server.certificate_pem())
            config["auth"] = {
                "token": {
                    "realm": self._token_server.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(bundle),
                }
            }
        return config

    def start(self) -> None:
        """Start the registry and wait until ``/v2/`` answers."""
        config = self._dir / "config.yml"
        # JSON is YAML: no YAML library needed.
        config.write_text(json.dumps(self._config()))
        log = open(self._dir / "registry.log", "wb")  # noqa: SIM115 (the child keeps it)
        with log:
            self._process = subprocess.Popen(
                [str(binary()), "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, resolved beforehand
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"docker-registry exited at startup: {self.log()}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/v2/")
                    if conn.getresponse().status in (200, 401):
                        return
                finally:
                    conn.close()
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host} in time")

    def log(self) -> str:
        """What the registry printed so far."""
        return (self._dir / "registry.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop the registry and remove its folder."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _recv_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """An HTTP head (up to the blank line) and whatever came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class FlakyProxy:
    """A TCP proxy on loopback in front of ``upstream`` (``HOST:PORT``); a context manager.

    Faults apply to the next blob downloads (``GET /v2/.../blobs/...``), failures first:
    ``drop_after(n)`` ends the connection after ``n`` bytes of the response body (of
    the next download of one blob if a digest is given), ``fail_with(status, times)``
    answers the next ``times`` blob downloads with ``status`` itself. ``strip_range``
    hides range support by removing ``Range`` headers. ``ranges`` lists the ``Range``
    headers blob downloads carried (``""`` for none); ``downloads`` the same with the
    blob's digest, as ``(digest, range)``.
    """

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.strip_range = False
        self.ranges: list[str] = []
        self.downloads: list[tuple[str, str]] = []
        self._drop: int | None = None
        self._drop_digest: str | None = None
        self._reset = False
        self._failures: list[bytes] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def drop_after(self, n: int, *, reset: bool = False, digest: str | None = None) -> None:
        """Cut the next blob download (of blob ``digest`` if given) after ``n`` body bytes:
        closed cleanly, so the client gets exactly ``n`` bytes, or with a TCP reset (the
        client's kernel then throws away what it had not read yet, so it gets ``n`` bytes
        at most)."""
        with self._lock:
            self._drop = n
            self._reset = reset
            self._drop_digest = digest

    def fail_with(self, status: int, times: int = 1, retry_after: str = "0") -> None:
        """Answer the next ``times`` blob downloads with HTTP ``status``."""
        response = (
            f"HTTP/1.1 {status} Injected\r\nContent-Length: 0\r\nRetry-After: {retry_after}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        with self._lock:
            self._failures.extend([response] * times)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _serve(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            head, rest = _recv_head(client)
            lines = head.split(b"\r\n")
            is_blob_get = lines[0].startswith(b"GET ") and b"/blobs/sha256:" in lines[0]
            drop: int | None = None
            if is_blob_get:
                range_values = [ln for ln in lines if ln.lower().startswith(b"range:")]
                digest = lines[0].split(b" ")[1].rpartition(b"/blobs/")[2].decode()
                range_value = (
                    range_values[0].split(b":", 1)[1].strip().decode() if range_values else ""
                )
                with self._lock:
                    self.ranges.append(range_value)
                    self.downloads.append((digest, range_value))
                    failure = self._failures.pop(0) if self._failures else None
                    if failure is None and self._drop_digest in (None, digest):
                        drop, self._drop = self._drop, None
                    reset = self._reset
                if failure is not None:
                    client.sendall(failure)
                    return
                if self.strip_range:
                    head = b"\r\n".join(ln for ln in lines if not ln.lower().startswith(b"range:"))
            with socket.create_connection(self._upstream) as upstream:
                upstream.sendall(head + rest)
                if drop is not None:
                    # A GET has no body to forward: no thread holds the client socket, so
                    # closing it really resets the connection.
                    self._relay_and_drop(upstream, client, drop, reset)
                    return
                forward = threading.Thread(target=_pump, args=(client, upstream), daemon=True)
                forward.start()
                _pump(upstream, client)
                forward.join(5)

    @staticmethod
    def _relay_and_drop(
        upstream: socket.socket, client: socket.socket, n: int, reset: bool
    ) -> None:
        head, body = _recv_head(upstream)
        while len(body) < n:
            chunk = upstream.recv(65536)
            if not chunk:
                break
            body += chunk
        client.sendall(head + body[:n])
        if reset:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        upstream.close()

    def __enter__(self) -> Self:
        self._accepting.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # shutdown wakes the blocked accept(); close alone would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(5)
        for thread in self._threads:
            thread.join(5)
