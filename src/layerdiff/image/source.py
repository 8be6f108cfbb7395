"""Where images come from: the ``ImageSource`` protocol and what it resolves to.

An ``ImageSource`` resolves an image for a platform into an ``Image`` (its config digest,
its layers with their expected diffIDs) and opens each layer blob for streaming. Sources
made of content-addressed blobs (an OCI layout, on disk or in a tar, and a registry) are
``BlobStore``s wrapped by ``layerdiff.image.resolve.BlobImageSource``, which walks indexes
and manifests; a ``docker save`` archive, which names its files by path, is its own
source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from layerdiff.errors import CorruptLayerError
from layerdiff.image.platforms import Platform
from layerdiff.oci import Descriptor

#: The largest index, manifest or config read (distribution's own manifest limit):
#: JSON is held in memory, so a hostile source must not choose its size.
JSON_MAX = 4 << 20


class BlobStream(Protocol):
    """A blob being read: ``read`` until ``b""``, then ``close``."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""

    def close(self) -> None:
        """Release the file or connection."""


@dataclass(frozen=True)
class Layer:
    """One layer of an image, as the unpacker needs it.

    ``digest`` and ``size`` are the blob's, checked while it streams; a ``docker save``
    archive names no digest for most layers, so there only the ``diff_id`` (from the
    config) is checked. ``media_type`` ``None`` means the compression is told from the bytes.
    """

    index: int
    media_type: str | None
    digest: str | None
    size: int | None
    diff_id: str

    def describe(self) -> str:
        """``layer N (DIGEST)`` for messages: the blob's digest, else the diffID."""
        return f"layer {self.index} ({self.digest or self.diff_id})"


@dataclass(frozen=True)
class Image:
    """An image resolved for one platform: what ``unpack_image`` applies."""

    config_digest: str
    manifest_digest: str | None
    platform: Platform
    layers: tuple[Layer, ...]


class ImageSource(Protocol):
    """An image in some form: resolve it for a platform, then stream its layers."""

    @property
    def name(self) -> str:
        """The source as the user named it, for messages and the unpack journal."""

    def resolve(self, platform: Platform, *, strict: bool) -> Image:
        """The image for ``platform`` (``strict``: the platform was asked for explicitly)."""

    def open_layer(self, layer: Layer) -> BlobStream:
        """The raw bytes of ``layer``'s blob; the caller checks digest and size."""

    def close(self) -> None:
        """Release files and connections."""


class BlobStore(Protocol):
    """Content-addressed blobs and the descriptor of the image they hold."""

    @property
    def name(self) -> str:
        """The store as the user named it."""

    def top(self) -> Descriptor:
        """The image's top descriptor: an index or a manifest."""

    def read(self, desc: Descriptor, limit: int) -> bytes:
        """The whole blob ``desc`` (at most ``limit`` bytes), checked against its digest."""

    def open(self, desc: Descriptor) -> BlobStream:
        """A stream of blob ``desc``; the caller checks digest and size."""

    def close(self) -> None:
        """Release files and connections."""


def load_json(data: bytes, what: str) -> Any:
    """``data`` parsed as JSON; ``CorruptLayerError`` naming ``what`` if it is not JSON."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:
        raise CorruptLayerError(f"{what} is not valid JSON: {err}") from None


def parse_json(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object; ``CorruptLayerError`` naming ``what`` otherwise."""
    value = load_json(data, what)
    if not isinstance(value, dict):
        raise CorruptLayerError(f"{what} is not a JSON object")
    return value
