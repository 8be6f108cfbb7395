"""OCI descriptors, media types and digests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

LABEL_UNCOMPRESSED = "containerd.io/uncompressed"

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def is_valid_digest(digest: str) -> bool:
    """Whether ``digest`` is a well-formed sha256 digest string."""
    return _DIGEST_RE.match(digest) is not None


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a blob is, its digest and its size."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The descriptor in the OCI JSON shape (camelCase keys, annotations if any)."""
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out
