"""One image in a registry as a store of content-addressed blobs (the shape of
``layerdiff.image.source.BlobStore``): its top descriptor, manifests, configs and layers.

Indexes and manifests come from the manifests endpoint, everything else from the blobs
endpoint: a registry keeps the two apart, even though both are addressed by digest.
"""

from __future__ import annotations

from layerdiff.errors import LimitExceededError
from layerdiff.oci import Descriptor
from layerdiff.registry.blob import BlobReader
from layerdiff.registry.client import MANIFEST_MEDIA_TYPES, FetchedManifest, RegistryClient
from layerdiff.registry.reference import Reference


class RegistryStore:
    """The blobs of image ``reference`` through ``client`` (a client of its host)."""

    def __init__(self, reference: Reference, client: RegistryClient) -> None:
        self._reference = reference
        self._client = client
        self._top: FetchedManifest | None = None

    @property
    def name(self) -> str:
        """``registry:HOST/NAME[:TAG][@DIGEST]``."""
        return f"registry:{self._reference}"

    def top(self) -> Descriptor:
        """The descriptor of what the reference names: an index or a manifest."""
        if self._top is None:
            self._top = self._client.manifest(self._reference.name, self._reference.target)
        return Descriptor(self._top.media_type, self._top.digest, len(self._top.data))

    def read(self, desc: Descriptor, limit: int) -> bytes:
        """The whole of ``desc`` (at most ``limit`` bytes), checked against its digest."""
        if desc.size > limit:
            raise LimitExceededError(
                f"{self.name}: {desc.digest} is {desc.size} bytes, more than {limit}"
            )
        if self._top is not None and desc.digest == self._top.digest:
            return self._top.data
        if desc.media_type in MANIFEST_MEDIA_TYPES:
            # Fetched by digest: the client checks the bytes against it.
            return self._client.manifest(self._reference.name, desc.digest).data
        with self.open(desc) as reader:
            return reader.read()

    def open(self, desc: Descriptor) -> BlobReader:
        """A stream of blob ``desc``, checked against its digest and size as it is read."""
        return self._client.open_blob(self._reference.name, desc.digest, desc.size)

    def close(self) -> None:
        """Nothing to release: the client holds no connection between requests."""
