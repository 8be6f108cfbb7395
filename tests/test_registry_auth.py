"""WWW-Authenticate challenges and credentials from Docker's config.json."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from layerdiff.errors import InvalidArgumentError
from layerdiff.registry.auth import (
    Challenge,
    Credentials,
    docker_config_path,
    docker_credentials,
    parse_challenges,
)

CHALLENGES = [
    (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"',
        [
            Challenge(
                "bearer",
                {
                    "realm": "https://auth.docker.io/token",
                    "service": "registry.docker.io",
                    "scope": "repository:library/busybox:pull",
                },
            )
        ],
    ),
    ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
    ("basic REALM=plain", [Challenge("basic", {"realm": "plain"})]),
    (
        'Bearer realm="r", scope="repository:a:pull,push", Basic realm="b"',
        [
            Challenge("bearer", {"realm": "r", "scope": "repository:a:pull,push"}),
            Challenge("basic", {"realm": "b"}),
        ],
    ),
    (
        r'Bearer realm="say \"hi\"",error="invalid_token"',
        [Challenge("bearer", {"realm": 'say "hi"', "error": "invalid_token"})],
    ),
    (
        "Negotiate abc123==, Basic realm=x",
        [Challenge("negotiate", {}), Challenge("basic", {"realm": "x"})],
    ),
    ("Bearer", [Challenge("bearer", {})]),
    ("", []),
]


@pytest.mark.parametrize(("header", "expected"), CHALLENGES)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def write_config(folder: Path, config: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    return path


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_config_path_from_environment(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": str(tmp_path)}) == tmp_path / "config.json"
    assert docker_config_path({"HOME": "/home/u"}) == Path("/home/u/.docker/config.json")


def test_credentials_by_host(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "auths": {
                "localhost:5000": {"auth": auth("alice", "pa:ss")},
                "https://index.docker.io/v1/": {"auth": auth("hub", "h")},
                "http://reg.example/v2/": {"username": "bob", "password": "b"},
                "other.example": {},
            }
        },
    )
    assert docker_credentials("localhost:5000", path) == Credentials("alice", "pa:ss")
    assert docker_credentials("docker.io", path) == Credentials("hub", "h")
    assert docker_credentials("registry-1.docker.io", path) == Credentials("hub", "h")
    assert docker_credentials("reg.example", path) == Credentials("bob", "b")
    assert docker_credentials("other.example", path) is None
    assert docker_credentials("localhost:5001", path) is None
    assert docker_credentials("x", tmp_path / "missing.json") is None


def test_credentials_default_to_docker_config_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, {"auths": {"r.example": {"auth": auth("u", "p")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert docker_credentials("r.example") == Credentials("u", "p")


def test_credential_helpers_are_not_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_config(tmp_path, {"credsStore": "desktop", "auths": {"r.example": {}}})
    with caplog.at_level(logging.DEBUG, logger="layerdiff.registry"):
        assert docker_credentials("r.example", path) is None
    assert "credential helper" in caplog.text


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"auths": []}', "'auths' is not an object"),
        ('{"auths": {"r.example": {"auth": "%%%"}}}', "not base64"),
        (
            '{"auths": {"r.example": {"auth": "' + base64.b64encode(b"nocolon").decode() + '"}}}',
            "no ':'",
        ),
    ],
)
def test_broken_config(tmp_path: Path, config: str, message: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(config)
    with pytest.raises(InvalidArgumentError, match=message) as info:
        docker_credentials("r.example", path)
    assert str(path) in str(info.value)


def test_credentials_repr_hides_password() -> None:
    assert "secret" not in repr(Credentials("u", "secret"))
    assert Credentials("u", "p").basic() == "Basic " + auth("u", "p")
