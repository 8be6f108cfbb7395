"""OCI image archives (image layout in a tar) built from layer blobs, for ``ctr import``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from collections.abc import Sequence

from backports import zstd

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


def sha256(data: bytes) -> str:
    """The OCI digest string of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_media_type(blob: bytes) -> str:
    """The OCI layer media type matching the blob's compression."""
    if blob.startswith(b"\x1f\x8b\x08"):
        return "application/vnd.oci.image.layer.v1.tar+gzip"
    if blob.startswith(b"\x28\xb5\x2f\xfd"):
        return "application/vnd.oci.image.layer.v1.tar+zstd"
    return "application/vnd.oci.image.layer.v1.tar"


def uncompressed(blob: bytes) -> bytes:
    """The layer's tar stream (whose digest is its diffID)."""
    media_type = layer_media_type(blob)
    if media_type.endswith("+gzip"):
        return gzip.decompress(blob)
    if media_type.endswith("+zstd"):
        return zstd.decompress(blob)
    return blob


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The chain IDs of a layer stack: how containerd names its committed snapshots."""
    chain = [diff_ids[0]]
    for diff_id in diff_ids[1:]:
        chain.append(sha256(f"{chain[-1]} {diff_id}".encode()))
    return chain


def image_archive(layers: Sequence[bytes], ref_name: str = "latest") -> tuple[bytes, list[str]]:
    """An OCI archive holding one image of ``layers``; returns it and the diffIDs."""
    blobs: dict[str, bytes] = {}
    diff_ids = [sha256(uncompressed(blob)) for blob in layers]
    layer_descs = []
    for blob in layers:
        blobs[sha256(blob)] = blob
        layer_descs.append(
            {"mediaType": layer_media_type(blob), "digest": sha256(blob), "size": len(blob)}
        )
    arch = _GOARCH.get(platform.machine(), platform.machine())
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }
    ).encode()
    blobs[sha256(config)] = config
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": layer_descs,
        }
    ).encode()
    blobs[sha256(manifest)] = manifest
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": sha256(manifest),
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": ref_name},
                    "platform": {"architecture": arch, "os": "linux"},
                }
            ],
        }
    ).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
        files.update({f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()})
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue(), diff_ids
