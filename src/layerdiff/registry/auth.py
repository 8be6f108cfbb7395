"""Registry authentication: ``WWW-Authenticate`` challenges, bearer tokens, Docker's
``config.json``.

The flow is Docker's token protocol: a registry answers 401 with a challenge; for
``Bearer`` the client asks the challenge's realm for a token scoped to what it wants
(``repository:NAME:pull``), sending basic credentials if it has any, and repeats its
request with the token. Tokens are cached per realm, service and scope until they
expire, so concurrent downloads from one repository share one token. ``Basic`` sends the
credentials with every request. The token fetch itself is I/O the caller provides.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from layerdiff.errors import InvalidArgumentError, PermissionDeniedError, SourceError
from layerdiff.registry.reference import DOCKER_HUB, DOCKER_HUB_API

log = logging.getLogger("layerdiff.registry")

#: A token the server gives without ``expires_in`` lives this long (the spec's default).
DEFAULT_TOKEN_LIFETIME = 60.0
#: The largest token response read (tokens are a few KiB; this bounds a broken server).
TOKEN_RESPONSE_MAX = 1 << 20

_TOKEN68 = re.compile(r"[ \t]+([A-Za-z0-9._~+/-]+=*)[ \t]*(?:,|$)")
_SCHEME = re.compile(r"\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)")
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: its scheme (lowercase) and params."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)


def parse_challenges(header: str) -> list[Challenge]:
    """The challenges of a ``WWW-Authenticate`` value (RFC 7235), in order.

    Parameter names are lowercased; quoted values are unescaped. Whatever does not parse
    ends the list, so a malformed header yields the challenges before the damage.
    """
    challenges: list[Challenge] = []
    pos = 0
    while pos < len(header):
        while pos < len(header) and header[pos] in " \t,":
            pos += 1
        scheme = _SCHEME.match(header, pos)
        if not scheme:
            break
        pos = scheme.end()
        params: dict[str, str] = {}
        # A scheme takes either one token68 ("Negotiate abc==") or name=value params.
        token = _TOKEN68.match(header, pos)
        if token:
            pos = token.end()
        while not token:
            while pos < len(header) and header[pos] in " \t,":
                pos += 1
            # A name not followed by '=' is the next challenge's scheme.
            param = _PARAM.match(header, pos)
            if not param:
                break
            value = param[2] if param[2] is not None else param[3]
            params[param[1].lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = param.end()
        challenges.append(Challenge(scheme[1].lower(), params))
    return challenges


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or an access token the registry takes as a password)."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        """The value of an ``Authorization: Basic`` header."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def docker_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    env = os.environ if environ is None else environ
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".docker" / "config.json"


def _config_host(key: str) -> str:
    # Keys are "host[:port]" or URLs ("https://index.docker.io/v1/"): keep the host part.
    if "://" in key:
        key = urllib.parse.urlsplit(key).netloc
    host = key.split("/", 1)[0].lower()
    return DOCKER_HUB if host in ("index.docker.io", DOCKER_HUB_API) else host


def docker_credentials(host: str, path: Path | None = None) -> Credentials | None:
    """The credentials Docker's ``config.json`` keeps for ``host``, or ``None``.

    Only the ``auths`` entries' ``auth`` (base64 ``user:password``) or
    ``username``/``password`` are read; credential helpers are not run.
    ``InvalidArgumentError`` if the file exists but is not a valid config.
    """
    path = path or docker_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidArgumentError(f"cannot read Docker config {path}: {err}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise InvalidArgumentError(f"Docker config {path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise InvalidArgumentError(f"Docker config {path} is not a JSON object")
    wanted = _config_host(host)
    if config.get("credsStore") or wanted in (config.get("credHelpers") or {}):
        log.debug("Docker config %s names a credential helper: not run by layerdiff", path)
    auths = config.get("auths", {})
    if not isinstance(auths, dict):
        raise InvalidArgumentError(f"Docker config {path}: 'auths' is not an object")
    for key, entry in auths.items():
        if _config_host(key) != wanted or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(entry["auth"], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, TypeError):
                raise InvalidArgumentError(
                    f"Docker config {path}: the 'auth' of {key!r} is not base64 of user:password"
                ) from None
            user, colon, password = decoded.partition(":")
            if not colon:
                raise InvalidArgumentError(
                    f"Docker config {path}: the 'auth' of {key!r} has no ':' between user "
                    "and password"
                )
            return Credentials(user, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None


#: ``fetch(url, headers) -> (status, body)``: one GET of a token realm, retried by the caller.
TokenFetch = Callable[[str, dict[str, str]], tuple[int, bytes]]


@dataclass
class _Token:
    value: str
    expires: float


class Authorizer:
    """The ``Authorization`` header for one registry host, per scope; thread-safe."""

    def __init__(self, host: str, credentials: Credentials | None, fetch: TokenFetch) -> None:
        self._host = host
        self._credentials = credentials
        self._fetch = fetch
        self._lock = threading.Lock()
        # What the registry last asked for: reused to authorize new scopes up front.
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, str], _Token] = {}

    def header(self, scope: str) -> str | None:
        """The header to send for ``scope`` before any challenge: a cached token, or
        basic credentials for a registry known to want them; ``None`` if nothing yet."""
        with self._lock:
            challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            return self._credentials.basic() if self._credentials else None
        return self._bearer(challenge, scope)

    def challenged(self, www_authenticate: str, scope: str, sent: str | None) -> str:
        """The header to retry with after a 401 carrying ``www_authenticate``.

        ``sent`` is the header of the refused request: a cached token that was refused
        is forgotten and a fresh one fetched. The caller retries once; a second 401 is
        ``denied``. ``PermissionDeniedError`` when no retry can help: no supported
        challenge, or Basic without credentials.
        """
        usable = [c for c in parse_challenges(www_authenticate) if c.scheme in ("bearer", "basic")]
        if not usable:
            raise PermissionDeniedError(
                f"registry {self._host} asks for an authentication layerdiff does not "
                f"support: {www_authenticate.strip()!r}"
            )
        challenge = next((c for c in usable if c.scheme == "bearer"), usable[0])
        with self._lock:
            self._challenge = challenge
            if sent is not None:
                for key, token in list(self._tokens.items()):
                    if "Bearer " + token.value == sent:
                        del self._tokens[key]
        if challenge.scheme == "basic":
            if self._credentials is None:
                raise PermissionDeniedError(
                    f"registry {self._host} requires credentials: none found for it in "
                    f"{docker_config_path()}"
                )
            return self._credentials.basic()
        # The registry may name the scope it wants (e.g. with more actions): honour it.
        return self._bearer(challenge, challenge.params.get("scope") or scope)

    def denied(self, scope: str) -> PermissionDeniedError:
        """The error for a request refused again with fresh credentials."""
        who = f"user {self._credentials.username!r}" if self._credentials else "anonymous access"
        return PermissionDeniedError(f"registry {self._host} denied {scope} to {who}")

    def _bearer(self, challenge: Challenge, scope: str) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise PermissionDeniedError(
                f"registry {self._host} sent a Bearer challenge without a realm"
            )
        service = challenge.params.get("service", "")
        key = (realm, service, scope)
        with self._lock:
            token = self._tokens.get(key)
        if token is not None and token.expires > time.monotonic():
            return "Bearer " + token.value
        token = self._fetch_token(realm, service, scope)
        with self._lock:
            self._tokens[key] = token
        return "Bearer " + token.value

    def _fetch_token(self, realm: str, service: str, scope: str) -> _Token:
        query = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        sep = "&" if urllib.parse.urlsplit(realm).query else "?"
        url = realm + (sep + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json"}
        if self._credentials is not None:
            headers["Authorization"] = self._credentials.basic()
        started = time.monotonic()
        status, body = self._fetch(url, headers)
        if status in (401, 403):
            who = (
                f"the credentials of user {self._credentials.username!r}"
                if self._credentials
                else "anonymous access"
            )
            raise PermissionDeniedError(
                f"token server {realm} for registry {self._host} refused {who} (HTTP {status})"
            )
        if status != 200:
            raise SourceError(
                f"token server {realm} for registry {self._host} answered HTTP {status}"
            )
        try:
            answer = json.loads(body)
            value = answer.get("token") or answer.get("access_token")
            lifetime = float(answer.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value = None
        if not isinstance(value, str) or not value:
            raise SourceError(f"token server {realm} for registry {self._host} sent no token")
        log.debug("got a token for %s from %s, valid %.0f s", scope, realm, lifetime)
        # Renew a little early, so a token does not expire between use and arrival.
        return _Token(value, started + lifetime * 0.9)
