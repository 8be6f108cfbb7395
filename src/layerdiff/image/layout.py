"""An OCI image layout (``oci-layout``, ``index.json``, ``blobs/ALG/HEX``) as a ``BlobStore``.

The same code reads a layout directory (``DirFiles``) and a layout in a tar archive
(``TarFiles``). ``index.json`` may list several images: ``ref`` picks them by their
``org.opencontainers.image.ref.name`` (or ``io.containerd.image.name``) annotation or by
digest; without it, an index listing one image name (or none) is resolved as a whole, by
platform.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from layerdiff.errors import CorruptLayerError, InvalidArgumentError, NotFoundError
from layerdiff.image import mediatypes
from layerdiff.image.files import Files, read_file
from layerdiff.image.resolve import parse_descriptor
from layerdiff.image.source import JSON_MAX, BlobStream, parse_json
from layerdiff.oci import Descriptor


def blob_path(digest: str) -> str:
    """Where a layout keeps blob ``digest`` (already validated by ``parse_descriptor``)."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"blobs/{algorithm}/{hex_digest}"


def check_digest(data: bytes, digest: str, what: str) -> None:
    """``CorruptLayerError`` unless ``data`` has ``digest``."""
    algorithm, _, expected = digest.partition(":")
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != expected:
        raise CorruptLayerError(
            f"{what}: blob has digest {algorithm}:{actual}, expected {digest}"
        )


def is_layout(files: Files) -> bool:
    """Whether ``files`` look like an OCI image layout."""
    return files.exists("oci-layout")


class OciLayout:
    """The image named ``ref`` (or the only one) of the OCI layout in ``files``."""

    def __init__(self, files: Files, ref: str | None, name: str) -> None:
        self.name = name
        self._files = files
        self._ref = ref
        self._memory: dict[str, bytes] = {}

    def top(self) -> Descriptor:
        """The descriptor ``ref`` names in ``index.json``, or ``index.json`` itself."""
        if not self._files.exists("oci-layout"):
            raise InvalidArgumentError(f"{self.name} is not an OCI image layout (no oci-layout)")
        marker = read_file(self._files, "oci-layout", JSON_MAX)
        layout = parse_json(marker, f"{self.name}: oci-layout")
        if not isinstance(layout.get("imageLayoutVersion"), str):
            raise CorruptLayerError(f"{self.name}: oci-layout has no imageLayoutVersion")
        data = read_file(self._files, "index.json", JSON_MAX)
        index = parse_json(data, f"{self.name}: index.json")
        entries = index.get("manifests")
        if not isinstance(entries, list):
            raise CorruptLayerError(f"{self.name}: index.json has no 'manifests' list")
        descs = [parse_descriptor(e, f"{self.name}: index.json") for e in entries]
        names = sorted({n for d in descs if (n := _image_name(d))})
        if self._ref is not None:
            chosen = [
                (e, d) for e, d in zip(entries, descs, strict=True)
                if self._ref in (d.digest, _image_name(d), d.annotations.get(
                    mediatypes.ANNOTATION_IMAGE_NAME))
            ]
            if not chosen:
                raise NotFoundError(
                    f"{self.name}: no image {self._ref!r} (images: {', '.join(names) or 'unnamed'})"
                )
            if len(chosen) == 1:
                return chosen[0][1]
            # One name for several manifests: a multi-platform image, resolved by platform.
            return self._remember(_index_of([e for e, _ in chosen]))
        if len(descs) == 1:
            return descs[0]
        if len(names) > 1:
            raise InvalidArgumentError(
                f"{self.name} holds several images ({', '.join(names)}): name one as "
                f"{self.name}:REF"
            )
        return self._remember(data, index)

    def _remember(self, data: bytes, index: dict[str, Any] | None = None) -> Descriptor:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self._memory[digest] = data
        media_type = (index or {}).get("mediaType") or mediatypes.OCI_INDEX
        return Descriptor(str(media_type), digest, len(data))

    def _checked_path(self, desc: Descriptor) -> str:
        path = blob_path(desc.digest)
        size = self._files.size(path)
        if size != desc.size:
            raise CorruptLayerError(
                f"{self.name}: blob {desc.digest} has {size} bytes, expected {desc.size}"
            )
        return path

    def read(self, desc: Descriptor, limit: int) -> bytes:
        """Blob ``desc``, checked against its size and digest."""
        if desc.digest in self._memory:
            return self._memory[desc.digest]
        data = read_file(self._files, self._checked_path(desc), limit)
        check_digest(data, desc.digest, self.name)
        return data

    def open(self, desc: Descriptor) -> BlobStream:
        """A stream of blob ``desc`` (its size checked now, its digest by the reader)."""
        return self._files.open(self._checked_path(desc))

    def close(self) -> None:
        """Close the files."""
        self._files.close()


def _image_name(desc: Descriptor) -> str | None:
    return desc.annotations.get(mediatypes.ANNOTATION_REF_NAME) or desc.annotations.get(
        mediatypes.ANNOTATION_IMAGE_NAME
    )


def _index_of(entries: list[Any]) -> bytes:
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    return json.dumps(index, separators=(",", ":")).encode()
