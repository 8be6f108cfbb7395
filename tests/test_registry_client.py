"""RegistryClient against a real registry (Debian's docker-registry) on loopback,
anonymous: push then pull blobs and manifests, indexes, 404s, tampered content."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from layerdiff.errors import (
    CorruptLayerError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    SourceError,
)
from layerdiff.image.registry import RegistryBlobs
from layerdiff.oci import Descriptor
from layerdiff.registry import (
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    RegistryClient,
    parse_reference,
)
from layerdiff.registry.blob import CHUNK
from tests.support.registry import Registry, digest_of, require_binary


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    require_binary()
    with Registry() as reg:
        yield reg


@pytest.fixture
def client(registry: Registry) -> RegistryClient:
    return RegistryClient(registry.host, insecure=True, credentials=None, backoff=0.01)


def read_all(client: RegistryClient, name: str, digest: str, size: int | None = None) -> bytes:
    with client.open_blob(name, digest, size) as reader:
        return b"".join(iter(lambda: reader.read(100_000), b""))


def push_image(client: RegistryClient, name: str, tag: str, layer: bytes) -> tuple[str, int]:
    """Push a one-layer OCI image; its manifest's digest and size."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    client.push_blob(name, config)
    client.push_blob(name, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    digest = client.push_manifest(name, tag, MEDIA_TYPE_OCI_MANIFEST, manifest)
    assert digest == digest_of(manifest)
    return digest, len(manifest)


def test_push_then_pull_blob_monolithic(client: RegistryClient) -> None:
    data = os.urandom(3 * CHUNK + 123)
    digest = client.push_blob("test/mono", data)
    assert digest == digest_of(data)
    assert client.blob_exists("test/mono", digest)
    assert read_all(client, "test/mono", digest, len(data)) == data
    # Without a size the registry's Content-Length is the size checked.
    assert read_all(client, "test/mono", digest) == data


def test_push_chunked_from_a_stream(client: RegistryClient) -> None:
    data = os.urandom(2 * CHUNK + 7)
    stream = io.BytesIO(b"prefix" + data)
    stream.seek(6)
    digest = client.push_blob(
        "test/chunked", stream, digest_of(data), len(data), chunk_size=CHUNK // 2
    )
    assert read_all(client, "test/chunked", digest) == data


def test_push_existing_blob_is_skipped(client: RegistryClient) -> None:
    data = b"already there"
    client.push_blob("test/skip", data)
    # A stream that would fail if read: the HEAD says the blob exists.
    assert client.push_blob("test/skip", io.BytesIO(), digest_of(data), len(data)) == digest_of(
        data
    )


def test_push_refuses_inconsistent_arguments(client: RegistryClient) -> None:
    with pytest.raises(InvalidArgumentError, match="do not match"):
        client.push_blob("test/bad", b"abc", digest_of(b"abd"))
    with pytest.raises(InvalidArgumentError, match="needs its digest and size"):
        client.push_blob("test/bad", io.BytesIO(b"abc"))
    with pytest.raises(InvalidArgumentError, match="ended 2 bytes early"):
        client.push_blob("test/bad", io.BytesIO(b"abc"), digest_of(b"abcde"), 5)


def test_empty_blob(client: RegistryClient) -> None:
    digest = client.push_blob("test/empty", b"")
    assert read_all(client, "test/empty", digest, 0) == b""


def test_read_all_at_once_and_zero(client: RegistryClient) -> None:
    data = os.urandom(CHUNK + 5)
    digest = client.push_blob("test/readall", data)
    with client.open_blob("test/readall", digest) as reader:
        assert reader.read(0) == b""
        assert reader.read() == data
        assert reader.read(10) == b""
        assert reader.offset == len(data)


def test_concurrent_downloads_share_a_client(client: RegistryClient) -> None:
    blobs = [os.urandom(CHUNK + i) for i in range(8)]
    digests = [client.push_blob("test/concurrent", b) for b in blobs]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda d: read_all(client, "test/concurrent", d), digests))
    assert got == blobs


def test_manifest_by_tag_and_digest(client: RegistryClient) -> None:
    digest, size = push_image(client, "test/image", "v1", b"layer bytes")
    by_tag = client.manifest("test/image", "v1")
    assert by_tag.media_type == MEDIA_TYPE_OCI_MANIFEST
    assert by_tag.digest == digest
    assert len(by_tag.data) == size
    assert client.manifest("test/image", digest) == by_tag


def test_index_by_tag_and_digest(client: RegistryClient) -> None:
    amd64, amd64_size = push_image(client, "test/multi", "amd64", b"amd64 layer")
    arm64, arm64_size = push_image(client, "test/multi", "arm64", b"arm64 layer")
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                    "digest": d,
                    "size": s,
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for d, s, arch in ((amd64, amd64_size, "amd64"), (arm64, arm64_size, "arm64"))
            ],
        }
    ).encode()
    index_digest = client.push_manifest("test/multi", "latest", MEDIA_TYPE_OCI_INDEX, index)
    by_tag = client.manifest("test/multi", "latest")
    assert by_tag == (MEDIA_TYPE_OCI_INDEX, index, index_digest)
    assert client.manifest("test/multi", index_digest) == by_tag
    child = client.manifest("test/multi", json.loads(by_tag.data)["manifests"][1]["digest"])
    assert child.digest == arm64


def test_docker_manifest_media_type(client: RegistryClient) -> None:
    config = b"{}"
    client.push_blob("test/docker", config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    client.push_manifest("test/docker", "d", MEDIA_TYPE_DOCKER_MANIFEST, manifest)
    assert client.manifest("test/docker", "d").media_type == MEDIA_TYPE_DOCKER_MANIFEST


def test_not_found(client: RegistryClient) -> None:
    missing = digest_of(b"never pushed")
    client.push_blob("test/nf", b"something")
    with pytest.raises(NotFoundError, match=r"blob sha256:\w+ of test/nf not found.*BLOB_UNKNOWN"):
        client.open_blob("test/nf", missing)
    assert not client.blob_exists("test/nf", missing)
    with pytest.raises(NotFoundError, match=r"manifest test/nf:nope not found.*MANIFEST_UNKNOWN"):
        client.manifest("test/nf", "nope")
    with pytest.raises(NotFoundError, match="test/no-such-repo:latest not found"):
        client.manifest("test/no-such-repo", "latest")


def test_invalid_manifest_push_is_refused(client: RegistryClient) -> None:
    with pytest.raises(InvalidArgumentError, match=r"MANIFEST_INVALID|MANIFEST_BLOB_UNKNOWN"):
        client.push_manifest("test/badman", "x", MEDIA_TYPE_OCI_MANIFEST, b'{"schemaVersion": 2}')


def tamper(registry: Registry, digest: str) -> None:
    path = registry.blob_path(digest)
    data = path.read_bytes()
    path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])


def test_tampered_blob_names_both_digests(registry: Registry, client: RegistryClient) -> None:
    data = os.urandom(CHUNK + 99)
    digest = client.push_blob("test/tampered", data)
    tamper(registry, digest)
    changed = digest_of(registry.blob_path(digest).read_bytes())
    with pytest.raises(CorruptLayerError) as info:
        read_all(client, "test/tampered", digest, len(data))
    message = str(info.value)
    assert digest in message and changed in message and "test/tampered" in message


def test_wrong_size_is_corrupt(client: RegistryClient) -> None:
    digest = client.push_blob("test/size", b"12345")
    with pytest.raises(CorruptLayerError, match="serves 5 bytes, expected 6"):
        client.open_blob("test/size", digest, 6)


def test_tampered_manifest_fetched_by_digest(registry: Registry, client: RegistryClient) -> None:
    digest, _ = push_image(client, "test/tampered-manifest", "v1", b"layer")
    path = registry.blob_path(digest)
    # Still valid JSON: the registry parses the manifests it serves.
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    with pytest.raises(CorruptLayerError, match=f"expected {digest}"):
        client.manifest("test/tampered-manifest", digest)


def test_unreachable_registry_is_a_source_error() -> None:
    # A port nothing listens on: the connection is refused at once, every try.
    client = RegistryClient("127.0.0.1:9", insecure=True, credentials=None, retries=2, backoff=0.01)
    with pytest.raises(SourceError, match=r"127\.0\.0\.1:9: GET /v2/a/manifests/t failed after 3"):
        client.manifest("a", "t")


@pytest.mark.parametrize("host", ["", "a/b", "http://x", "host:port", "-bad"])
def test_invalid_host(host: str) -> None:
    with pytest.raises(InvalidArgumentError, match="invalid registry host"):
        RegistryClient(host, credentials=None)


def test_store_walks_an_image(registry: Registry, client: RegistryClient) -> None:
    layer = os.urandom(CHUNK + 1)
    manifest_digest, _ = push_image(client, "test/store", "v1", layer)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(client.manifest("test/store", "v1").data),
                }
            ],
        }
    ).encode()
    client.push_manifest("test/store", "multi", MEDIA_TYPE_OCI_INDEX, index)
    store = RegistryBlobs(client, parse_reference(f"{registry.host}/test/store:multi"))
    assert store.name == f"registry:{registry.host}/test/store:multi"
    top = store.top()
    assert (top.media_type, top.digest) == (MEDIA_TYPE_OCI_INDEX, digest_of(index))
    assert store.read(top, 1 << 20) == index
    entry = json.loads(index)["manifests"][0]
    manifest = json.loads(
        store.read(Descriptor(entry["mediaType"], entry["digest"], entry["size"]), 1 << 20)
    )
    config = manifest["config"]
    assert (
        json.loads(
            store.read(Descriptor(config["mediaType"], config["digest"], config["size"]), 1 << 20)
        )["os"]
        == "linux"
    )
    blob = manifest["layers"][0]
    desc = Descriptor(blob["mediaType"], blob["digest"], blob["size"])
    with pytest.raises(LimitExceededError):
        store.read(desc, 100)
    with contextlib.closing(store.open(desc)) as reader:
        assert reader.read() == layer
    store.close()
