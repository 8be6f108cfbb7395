"""Image references: ``[HOST[:PORT]/]NAME[:TAG][@DIGEST]``, with docker's grammar.

As docker does, the first path component is a registry host only when it looks like one
(it holds a ``.`` or a ``:``, or is ``localhost``); otherwise the reference names Docker
Hub, where a one-component name lives under ``library/``. A reference without tag or
digest means the tag ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from layerdiff.errors import InvalidArgumentError, UnsupportedError

DOCKER_HUB = "docker.io"
#: Where Docker Hub's registry API actually answers.
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
#: A registry host: a DNS name or an IP (IPv6 in brackets), with an optional port.
DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-zA-Z=_-]{32,}"

_DOMAIN_RE = re.compile(rf"^{DOMAIN}$")
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: registry host, repository name, tag and/or digest."""

    host: str
    name: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host (and port) whose ``/v2/`` API serves this reference."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    @property
    def target(self) -> str:
        """What to ask the manifests endpoint for: the digest if given, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        text = f"{self.host}/{self.name}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def _split_host(remainder: str) -> tuple[str, str]:
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first, rest
    return DOCKER_HUB, remainder


def parse_reference(text: str) -> Reference:
    """Parse ``text``; ``InvalidArgumentError`` if it breaks the grammar.

    Only sha256 digests are supported (``UnsupportedError`` for another algorithm).
    """
    if not text or text != text.strip():
        raise InvalidArgumentError(f"invalid image reference {text!r}: empty or blank-padded")
    remainder, at, digest = text.partition("@")
    if at:
        if not _DIGEST_RE.match(digest):
            raise InvalidArgumentError(f"invalid image reference {text!r}: bad digest")
        if not _SHA256_RE.match(digest):
            raise UnsupportedError(
                f"image reference {text!r}: only sha256 digests (64 lowercase hex) are supported"
            )
    host, path = _split_host(remainder)
    tag: str | None = None
    # A ':' after the last '/' starts the tag (one before it is the host's port).
    colon = path.rfind(":")
    if colon > path.rfind("/"):
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidArgumentError(f"invalid image reference {text!r}: bad tag {tag!r}")
    if not _DOMAIN_RE.match(host):
        raise InvalidArgumentError(f"invalid image reference {text!r}: bad registry host")
    if not _PATH_RE.match(path):
        raise InvalidArgumentError(
            f"invalid image reference {text!r}: the repository name must be lowercase "
            "components of [a-z0-9] joined by '/', with '.', '_', '__' or '-' inside"
        )
    if host == "index.docker.io":
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(host) + 1 + len(path) > NAME_MAX:
        raise InvalidArgumentError(
            f"invalid image reference {text!r}: name longer than {NAME_MAX} characters"
        )
    return Reference(host=host, name=path, tag=tag, digest=digest if at else None)
