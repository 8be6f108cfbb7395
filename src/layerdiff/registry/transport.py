"""One HTTP(S) request and its streamed response, on the standard library's ``http.client``.

A connection per request: no pool, no state shared between requests, so any number of
threads may send at once. Errors (``OSError``, ``http.client.HTTPException``) are left
to the caller, which knows which ones it retries.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping

Body = bytes | Iterable[bytes] | None


class Response:
    """A response whose body is read as a stream; close it when done."""

    def __init__(
        self, url: str, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse
    ) -> None:
        self.url = url
        self.status = resp.status
        self.reason = resp.reason
        self._conn = conn
        self._resp = resp

    def header(self, name: str) -> str | None:
        """The (last) value of header ``name``, or ``None``."""
        return self._resp.getheader(name)

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body; ``b""`` at its end.

        ``http.client.IncompleteRead`` if the peer closed before Content-Length bytes.
        """
        return self._resp.read(size)

    def read_all(self, limit: int) -> bytes | None:
        """The whole body, or ``None`` if it is longer than ``limit`` bytes."""
        data = self._resp.read(limit + 1)
        return None if len(data) > limit else data

    def close(self) -> None:
        """Drop the connection (the rest of the body is not read)."""
        self._resp.close()
        self._conn.close()


def request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: Body = None,
    *,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
) -> Response:
    """Send one request to an ``http://`` or ``https://`` URL and read its headers."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise http.client.InvalidURL(f"bad port in URL {url}") from None
    if parts.hostname is None or parts.scheme not in ("http", "https"):
        raise http.client.InvalidURL(f"not an http(s) URL: {url}")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, port, timeout=timeout, context=ssl_context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        conn.request(method, target, body=body, headers=dict(headers))
        resp = conn.getresponse()
    except BaseException:
        conn.close()
        raise
    return Response(url, conn, resp)
