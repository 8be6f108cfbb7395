"""An image in a registry as a ``BlobStore``: a thin adapter over ``RegistryClient``.

Manifests and indexes come from the manifests endpoint (checked against their digest
when fetched by digest, which every child is); configs and layers from the blobs
endpoint. The top manifest, fetched by tag, is kept in memory under its digest.
"""

from __future__ import annotations

from layerdiff.errors import CorruptLayerError, LimitExceededError
from layerdiff.image import mediatypes
from layerdiff.image.source import BlobStream
from layerdiff.oci import Descriptor
from layerdiff.registry import MANIFEST_MEDIA_TYPES, Reference, RegistryClient

_DOCUMENTS = mediatypes.INDEXES | mediatypes.MANIFESTS | frozenset(mediatypes.DOCKER_SCHEMA1)


class RegistryBlobs:
    """Image ``ref`` of the registry ``client`` talks to."""

    def __init__(self, client: RegistryClient, ref: Reference) -> None:
        self.name = f"registry:{ref}"
        self._client = client
        self._ref = ref
        self._memory: dict[str, bytes] = {}

    def top(self) -> Descriptor:
        """The manifest or index the reference names."""
        fetched = self._client.manifest(self._ref.name, self._ref.target, MANIFEST_MEDIA_TYPES)
        self._memory[fetched.digest] = fetched.data
        return Descriptor(fetched.media_type, fetched.digest, len(fetched.data))

    def read(self, desc: Descriptor, limit: int) -> bytes:
        """A manifest, index or config, checked against ``desc``."""
        if desc.digest in self._memory:
            return self._memory[desc.digest]
        if desc.size > limit:
            raise LimitExceededError(
                f"{self.name}: {desc.digest} is {desc.size} bytes, more than {limit}"
            )
        if desc.media_type in _DOCUMENTS:
            data = self._client.manifest(self._ref.name, desc.digest, MANIFEST_MEDIA_TYPES).data
        else:
            with self._client.open_blob(self._ref.name, desc.digest, desc.size) as blob:
                data = blob.read()  # at most desc.size bytes: the reader stops there
        if len(data) != desc.size:
            raise CorruptLayerError(
                f"{self.name}: {desc.digest} has {len(data)} bytes, expected {desc.size}"
            )
        return data

    def open(self, desc: Descriptor) -> BlobStream:
        """A download of layer ``desc``."""
        return self._client.open_blob(self._ref.name, desc.digest, desc.size)

    def close(self) -> None:
        """Nothing to release: the client keeps no connection open between requests."""
