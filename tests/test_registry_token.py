"""RegistryClient against a real registry with token auth: a token server on loopback
that checks basic credentials and issues JWTs the registry verifies."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerdiff.registry import Credentials, PermissionDeniedError, RegistryClient
from tests.support.registry import Registry, TokenServer, digest_of, require_binary

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    require_binary()
    with TokenServer({USER: PASSWORD}) as server:
        yield server


@pytest.fixture(scope="module")
def registry(token_server: TokenServer) -> Iterator[Registry]:
    with Registry(token_server) as reg:
        yield reg


@pytest.fixture(scope="module")
def blob(registry: Registry) -> tuple[str, bytes]:
    """A blob pushed to repository ``team/app``: its digest and bytes."""
    data = os.urandom(100_000)
    client = RegistryClient(registry.host, insecure=True, credentials=Credentials(USER, PASSWORD))
    return client.push_blob("team/app", data), data


def test_right_password_works_and_token_is_reused(
    registry: Registry, token_server: TokenServer, blob: tuple[str, bytes]
) -> None:
    digest, data = blob
    client = RegistryClient(registry.host, insecure=True, credentials=Credentials(USER, PASSWORD))
    before = token_server.issued
    for _ in range(3):
        with client.open_blob("team/app", digest, len(data)) as reader:
            assert reader.read() == data
    assert client.blob_exists("team/app", digest)
    # One token for repository:team/app:pull, cached for every later request.
    assert token_server.issued == before + 1


def test_wrong_password_is_refused_clearly(registry: Registry, blob: tuple[str, bytes]) -> None:
    client = RegistryClient(registry.host, insecure=True, credentials=Credentials(USER, "wrong"))
    with pytest.raises(PermissionDeniedError) as info:
        client.open_blob("team/app", blob[0])
    message = str(info.value)
    assert "refused the credentials of user 'alice'" in message
    assert registry.host in message and "wrong" not in message


def test_anonymous_is_denied(registry: Registry, blob: tuple[str, bytes]) -> None:
    client = RegistryClient(registry.host, insecure=True, credentials=None)
    with pytest.raises(
        PermissionDeniedError, match="denied repository:team/app:pull to anonymous access"
    ):
        client.manifest("team/app", "latest")


def test_credentials_from_docker_config(
    registry: Registry, blob: tuple[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": encoded}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    client = RegistryClient(registry.host, insecure=True)
    digest, data = blob
    with client.open_blob("team/app", digest) as reader:
        assert reader.read() == data


def test_push_asks_for_a_push_token(registry: Registry, token_server: TokenServer) -> None:
    client = RegistryClient(registry.host, insecure=True, credentials=Credentials(USER, PASSWORD))
    data = b"pushed with a pull,push token"
    before = token_server.issued
    assert client.push_blob("team/other", data) == digest_of(data)
    # pull (the HEAD), then pull,push (the upload): two scopes, two tokens.
    assert token_server.issued == before + 2
    with client.open_blob("team/other", digest_of(data)) as reader:
        assert reader.read() == data
    assert token_server.issued == before + 2
