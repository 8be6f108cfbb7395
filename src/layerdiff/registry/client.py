"""A client of one registry's OCI distribution API (``/v2/``): manifests and blobs, pull
and push.

Every request goes through the same path: the ``Authorization`` for its scope (a cached
token, or the answer to the registry's 401 challenge, tried once), redirects (the header
is sent to the registry's own origin only, never to the storage it redirects to), and
retries with back-off on transient failures. The client keeps no state but its token
cache, so one client serves many threads.
"""

from __future__ import annotations

import enum
import hashlib
import http.client
import json
import re
import ssl
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import BinaryIO, Literal, NamedTuple, NoReturn

from layerdiff.errors import (
    CorruptLayerError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    SourceError,
    UnsupportedError,
)
from layerdiff.oci import is_valid_digest
from layerdiff.registry import transport
from layerdiff.registry.auth import (
    TOKEN_RESPONSE_MAX,
    Authorizer,
    Credentials,
    docker_credentials,
)
from layerdiff.registry.blob import CHUNK, BlobReader
from layerdiff.registry.reference import DOCKER_HUB, DOCKER_HUB_API, DOMAIN
from layerdiff.registry.retry import Backoff, TransientError, parse_retry_after

MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_MEDIA_TYPES = (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
)
#: The largest manifest read (distribution's own limit): manifests are held in memory.
MANIFEST_MAX = 4 << 20
MAX_REDIRECTS = 10
_ERROR_BODY_MAX = 64 << 10
_HOST_RE = re.compile(rf"^{DOMAIN}$")
_REDIRECTS = (301, 302, 303, 307, 308)
# 501 and 505 say the server cannot do it at all: trying again will not help.
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


class FromDockerConfig(enum.Enum):
    """The default for ``credentials``: whatever Docker's ``config.json`` has for the host."""

    DOCKER_CONFIG = "docker-config"


DOCKER_CONFIG = FromDockerConfig.DOCKER_CONFIG


class FetchedManifest(NamedTuple):
    """A manifest as the registry served it: media type, exact bytes, their digest."""

    media_type: str
    data: bytes
    digest: str


def _digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _content_range_start(value: str | None) -> int | None:
    # "bytes START-END/TOTAL" (TOTAL may be "*").
    if not value or not value.startswith("bytes "):
        return None
    start, dash, _ = value[6:].partition("-")
    return int(start) if dash and start.isdigit() else None


# A body to send: bytes, or a function giving a fresh iterable of chunks each time it is
# called (a request may be sent twice: again after an auth challenge or a redirect).
_Body = bytes | Callable[[], Iterable[bytes]] | None


class RegistryClient:
    """The ``/v2/`` API of the registry at ``host`` (``HOST[:PORT]``).

    ``insecure`` speaks plain HTTP (loopback test registries); otherwise HTTPS is
    verified with ``ssl_context`` or the system's CAs. ``credentials`` are a
    ``Credentials``, ``None`` for anonymous access, or (the default) those Docker's
    ``config.json`` keeps for ``host``.
    """

    def __init__(
        self,
        host: str,
        *,
        insecure: bool = False,
        credentials: Credentials | Literal[FromDockerConfig.DOCKER_CONFIG] | None = DOCKER_CONFIG,
        retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not _HOST_RE.match(host):
            raise InvalidArgumentError(f"invalid registry host {host!r}: expected HOST[:PORT]")
        if retries < 0:
            raise InvalidArgumentError(f"retries must be 0 or more, not {retries}")
        self.host = host
        if credentials is DOCKER_CONFIG:
            credentials = docker_credentials(host)
        api_host = DOCKER_HUB_API if host == DOCKER_HUB else host
        self._base = f"{'http' if insecure else 'https'}://{api_host}"
        self._backoff = Backoff(retries=retries, base=backoff)
        self._timeout = timeout
        self._ssl = None if insecure else (ssl_context or ssl.create_default_context())
        self._auth = Authorizer(host, credentials, self._fetch_token)

    # -- pull -------------------------------------------------------------------------

    def manifest(
        self, name: str, reference: str, accept: Sequence[str] = MANIFEST_MEDIA_TYPES
    ) -> FetchedManifest:
        """The manifest (or index) ``name:reference``; ``reference`` is a tag or a digest.

        Fetched by digest, its bytes are checked against it (``CorruptLayerError``).
        ``NotFoundError`` if the registry has no such manifest.
        """
        path = f"/v2/{name}/manifests/{reference}"
        what = f"registry {self.host}: GET {path}"

        def attempt() -> FetchedManifest:
            resp = self._request(
                "GET", path, scope=f"repository:{name}:pull", headers={"Accept": ", ".join(accept)}
            )
            try:
                if resp.status != 200:
                    self._fail(resp, f"manifest {name}:{reference}")
                data = self._read_body(resp, MANIFEST_MAX, f"manifest {name}:{reference}")
            finally:
                resp.close()
            return FetchedManifest(self._media_type(resp, data), data, _digest_of(data))

        fetched = self._backoff.run(what, attempt)
        if is_valid_digest(reference) and fetched.digest != reference:
            raise CorruptLayerError(
                f"manifest {name}@{reference} from registry {self.host}: the content's digest "
                f"is {fetched.digest}, expected {reference}"
            )
        return fetched

    def open_blob(self, name: str, digest: str, size: int | None = None) -> BlobReader:
        """A stream of blob ``digest`` of ``name``, checked against ``digest`` and ``size``.

        Opening sends the first request (``NotFoundError`` at once for an unknown blob);
        a dropped connection is resumed from the next byte with a range request.
        """
        if not is_valid_digest(digest):
            raise InvalidArgumentError(f"invalid blob digest {digest!r}")
        path = f"/v2/{name}/blobs/{digest}"
        what = f"blob {digest} of {name} from registry {self.host}"

        def opener(offset: int) -> tuple[transport.Response, int | None]:
            return self._open_blob_at(path, name, digest, size, offset)

        reader = BlobReader(
            what=what, digest=digest, size=size, opener=opener, backoff=self._backoff
        )
        try:
            reader.connect()
        except BaseException:
            reader.close()
            raise
        return reader

    def _open_blob_at(
        self, path: str, name: str, digest: str, size: int | None, offset: int
    ) -> tuple[transport.Response, int | None]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = self._request("GET", path, scope=f"repository:{name}:pull", headers=headers)
        try:
            if offset and (
                resp.status != 206 or _content_range_start(resp.header("Content-Range")) != offset
            ):
                # The reader already has the first bytes and cannot take them back.
                raise SourceError(
                    f"registry {self.host}: GET {path}: the download broke after {offset} bytes "
                    f"and cannot be resumed: the server answered a range request with HTTP "
                    f"{resp.status} (Content-Range {resp.header('Content-Range')!r})"
                )
            if resp.status not in (200, 206):
                self._fail(resp, f"blob {digest} of {name}")
            length = resp.header("Content-Length")
            total = int(length) + offset if length and length.isdigit() else None
            if size is not None and total is not None and total != size:
                raise CorruptLayerError(
                    f"blob {digest} of {name} from registry {self.host}: the registry serves "
                    f"{total} bytes, expected {size}"
                )
        except BaseException:
            resp.close()
            raise
        return resp, total

    def blob_exists(self, name: str, digest: str) -> bool:
        """Whether the registry has blob ``digest`` in repository ``name`` (HEAD)."""
        path = f"/v2/{name}/blobs/{digest}"

        def attempt() -> bool:
            resp = self._request("HEAD", path, scope=f"repository:{name}:pull")
            try:
                if resp.status == 404:
                    return False
                if resp.status != 200:
                    self._fail(resp, f"blob {digest} of {name}")
                return True
            finally:
                resp.close()

        return self._backoff.run(f"registry {self.host}: HEAD {path}", attempt)

    # -- push -------------------------------------------------------------------------

    def push_blob(
        self,
        name: str,
        data: bytes | BinaryIO,
        digest: str | None = None,
        size: int | None = None,
        *,
        chunk_size: int | None = None,
    ) -> str:
        """Upload a blob to ``name``; its digest. Skipped if the registry has it already.

        ``data`` is bytes, or a seekable binary file read from its current position
        (then ``digest`` and ``size`` are required). One monolithic PUT by default; with
        ``chunk_size``, the chunked flow (PATCH per chunk, then PUT).
        """
        if isinstance(data, bytes):
            digest = digest or _digest_of(data)
            size = len(data) if size is None else size
            if size != len(data) or digest != _digest_of(data):
                raise InvalidArgumentError("push_blob: digest or size do not match the data")
            start = 0
        elif digest is None or size is None:
            raise InvalidArgumentError("push_blob: a stream needs its digest and size")
        else:
            start = data.tell()
        if not is_valid_digest(digest):
            raise InvalidArgumentError(f"invalid blob digest {digest!r}")
        if chunk_size is not None and chunk_size <= 0:
            raise InvalidArgumentError(f"chunk size must be positive, not {chunk_size}")
        if self.blob_exists(name, digest):
            return digest
        blob_digest, blob_size = digest, size

        def chunks(step: int) -> Iterator[bytes]:
            if isinstance(data, bytes):
                yield from (data[i : i + step] for i in range(0, len(data), step))
                return
            data.seek(start)
            left = blob_size
            while left:
                chunk = data.read(min(step, left))
                if not chunk:
                    raise InvalidArgumentError(
                        f"push_blob: the stream of {blob_digest} ended {left} bytes early"
                    )
                left -= len(chunk)
                yield chunk

        def attempt() -> str:
            return self._upload_once(name, blob_digest, blob_size, chunks, chunk_size)

        return self._backoff.run(f"registry {self.host}: upload of {digest} to {name}", attempt)

    def _upload_once(
        self,
        name: str,
        digest: str,
        size: int,
        chunks: Callable[[int], Iterator[bytes]],
        chunk_size: int | None,
    ) -> str:
        scope = f"repository:{name}:pull,push"
        what = f"upload of blob {digest} to {name}"
        resp = self._request(
            "POST",
            f"/v2/{name}/blobs/uploads/",
            scope=scope,
            headers={"Content-Length": "0"},
            body=b"",
        )
        location = self._upload_location(resp, 202, what)
        if chunk_size is None:
            resp = self._request(
                "PUT",
                _with_query(location, digest=digest),
                scope=scope,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                body=lambda: chunks(CHUNK),
            )
        else:
            offset = 0
            for chunk in chunks(chunk_size):
                resp = self._request(
                    "PATCH",
                    location,
                    scope=scope,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(len(chunk)),
                        "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                    },
                    body=chunk,
                )
                location = self._upload_location(resp, 202, what)
                offset += len(chunk)
            resp = self._request(
                "PUT",
                _with_query(location, digest=digest),
                scope=scope,
                headers={"Content-Length": "0"},
                body=b"",
            )
        try:
            if resp.status != 201:
                self._fail(resp, what)
        finally:
            resp.close()
        return digest

    def _upload_location(self, resp: transport.Response, status: int, what: str) -> str:
        try:
            if resp.status != status:
                self._fail(resp, what)
            location = resp.header("Location")
            if not location:
                raise UnsupportedError(
                    f"registry {self.host}: {what}: the answer has no Location header"
                )
            return urllib.parse.urljoin(resp.url, location)
        finally:
            resp.close()

    def push_manifest(self, name: str, reference: str, media_type: str, data: bytes) -> str:
        """Store manifest ``data`` as ``name:reference`` (a tag or its digest); its digest."""
        path = f"/v2/{name}/manifests/{reference}"

        def attempt() -> str:
            resp = self._request(
                "PUT",
                path,
                scope=f"repository:{name}:pull,push",
                headers={"Content-Type": media_type, "Content-Length": str(len(data))},
                body=data,
            )
            try:
                if resp.status != 201:
                    self._fail(resp, f"manifest {name}:{reference}")
            finally:
                resp.close()
            return _digest_of(data)

        return self._backoff.run(f"registry {self.host}: PUT {path}", attempt)

    # -- requests ---------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        body: _Body = None,
    ) -> transport.Response:
        """One request, authorized for ``scope`` and redirected; raises ``TransientError``."""
        url = urllib.parse.urljoin(self._base, path_or_url)
        sent = self._auth.header(scope)
        for challenged in (False, True):
            resp = self._follow(
                method,
                url,
                headers or {},
                body,
                authorization=sent,
                auth_origin=_origin(self._base),
            )
            if resp.status != 401:
                return resp
            www_authenticate = resp.header("WWW-Authenticate") or ""
            resp.close()
            if challenged:
                break
            sent = self._auth.challenged(www_authenticate, scope, sent)
        raise self._auth.denied(scope)

    def _follow(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: _Body,
        *,
        authorization: str | None,
        auth_origin: tuple[str, str],
    ) -> transport.Response:
        for _ in range(MAX_REDIRECTS + 1):
            sending = dict(headers)
            # Credentials go to the origin they are for: never to a redirect's target.
            if authorization and _origin(url) == auth_origin:
                sending["Authorization"] = authorization
            resp = self._send(method, url, sending, body)
            location = resp.header("Location")
            if resp.status not in _REDIRECTS or not location:
                return resp
            resp.close()
            url = urllib.parse.urljoin(url, location)
            if resp.status == 303:
                method, body = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        raise UnsupportedError(f"registry {self.host}: more than {MAX_REDIRECTS} redirects")

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: _Body
    ) -> transport.Response:
        path = urllib.parse.urlsplit(url).path
        try:
            resp = transport.request(
                method,
                url,
                headers,
                body() if callable(body) else body,
                timeout=self._timeout,
                ssl_context=self._ssl,
            )
        except (OSError, http.client.HTTPException) as err:
            raise TransientError(f"{method} {path}: {type(err).__name__}: {err}") from None
        if resp.status in _TRANSIENT:
            retry_after = parse_retry_after(resp.header("Retry-After"))
            resp.close()
            raise TransientError(f"{method} {path}: HTTP {resp.status} {resp.reason}", retry_after)
        return resp

    def _fetch_token(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        def attempt() -> tuple[int, bytes]:
            # The credentials are for the realm's origin only, like the registry's.
            plain = {k: v for k, v in headers.items() if k != "Authorization"}
            resp = self._follow(
                "GET",
                url,
                plain,
                None,
                authorization=headers.get("Authorization"),
                auth_origin=_origin(url),
            )
            try:
                return resp.status, self._read_body(resp, TOKEN_RESPONSE_MAX, "token")
            finally:
                resp.close()

        return self._backoff.run(f"token server {url.split('?', 1)[0]}", attempt)

    # -- answers ----------------------------------------------------------------------

    def _read_body(self, resp: transport.Response, limit: int, what: str) -> bytes:
        try:
            data = resp.read_all(limit)
        except (OSError, http.client.HTTPException) as err:
            raise TransientError(f"reading {what}: {type(err).__name__}: {err}") from None
        if data is None:
            raise LimitExceededError(f"registry {self.host}: {what} is larger than {limit} bytes")
        return data

    def _media_type(self, resp: transport.Response, data: bytes) -> str:
        declared = (resp.header("Content-Type") or "").split(";", 1)[0].strip()
        if declared in MANIFEST_MEDIA_TYPES:
            return declared
        # Some registries answer application/json: the document says what it is.
        try:
            inner = json.loads(data).get("mediaType")
        except (ValueError, AttributeError):
            inner = None
        return inner if isinstance(inner, str) and inner else declared

    def _fail(self, resp: transport.Response, what: str) -> NoReturn:
        """Raise the error that ``resp`` (an unexpected status) means for ``what``."""
        try:
            body = resp.read_all(_ERROR_BODY_MAX) or b""
        except (OSError, http.client.HTTPException):
            body = b""
        detail = ""
        try:
            errors = json.loads(body).get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError, TypeError):
            pass
        suffix = f" ({detail})" if detail else ""
        where = f"registry {self.host}: {what}"
        if resp.status == 404:
            raise NotFoundError(f"{where} not found{suffix}")
        if resp.status in (401, 403):
            raise PermissionDeniedError(f"{where}: access denied (HTTP {resp.status}){suffix}")
        if resp.status in (405, 501):
            raise UnsupportedError(f"{where}: not supported (HTTP {resp.status}){suffix}")
        raise InvalidArgumentError(f"{where}: HTTP {resp.status} {resp.reason}{suffix}")
