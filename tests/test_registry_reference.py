"""Image reference parsing, as docker's reference grammar."""

from __future__ import annotations

import pytest

from layerdiff.errors import InvalidArgumentError, UnsupportedError
from layerdiff.registry.reference import Reference, parse_reference

D = "sha256:" + "ab" * 32

VALID = [
    ("busybox", Reference("docker.io", "library/busybox")),
    ("busybox:1.36", Reference("docker.io", "library/busybox", tag="1.36")),
    ("user/app", Reference("docker.io", "user/app")),
    ("docker.io/busybox", Reference("docker.io", "library/busybox")),
    ("index.docker.io/user/app:v1", Reference("docker.io", "user/app", tag="v1")),
    ("localhost/app", Reference("localhost", "app")),
    ("localhost:5000/a/b:tag", Reference("localhost:5000", "a/b", tag="tag")),
    ("127.0.0.1:5000/a/b", Reference("127.0.0.1:5000", "a/b")),
    ("[::1]:5000/app:x", Reference("[::1]:5000", "app", tag="x")),
    ("ghcr.io/o/r/deep/name:1.0_rc-2", Reference("ghcr.io", "o/r/deep/name", tag="1.0_rc-2")),
    ("quay.io/a__b/c.d-e", Reference("quay.io", "a__b/c.d-e")),
    (f"localhost:5000/a@{D}", Reference("localhost:5000", "a", digest=D)),
    (f"reg.example/a:t@{D}", Reference("reg.example", "a", tag="t", digest=D)),
    (f"busybox@{D}", Reference("docker.io", "library/busybox", digest=D)),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t for t, _ in VALID])
def test_valid(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


INVALID = [
    "",
    " busybox",
    "Busybox",
    "localhost:5000/A/b",
    "a//b",
    "a/b/",
    "/a",
    "a:",
    "a:-tag",
    "a:" + "t" * 129,
    "a@sha256:abc",
    "a@",
    "-host.io/a",
    "host.io:port/a",
    "a/b:c/d",
    "a_/b",
    "a..b",
    "localhost:5000/" + "a" * 250,
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid image reference"):
        parse_reference(text)


def test_other_digest_algorithms_are_unsupported() -> None:
    with pytest.raises(UnsupportedError, match="only sha256"):
        parse_reference("a@sha512:" + "ab" * 64)


def test_api_host_target_and_str() -> None:
    hub = parse_reference("busybox")
    assert hub.api_host == "registry-1.docker.io"
    assert hub.target == "latest"
    assert str(hub) == "docker.io/library/busybox"
    local = parse_reference(f"localhost:5000/a:t@{D}")
    assert local.api_host == "localhost:5000"
    assert local.target == D
    assert str(local) == f"localhost:5000/a:t@{D}"
