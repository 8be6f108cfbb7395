"""Write a one-image OCI image layout archive from layer blobs, for `ctr images import`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass

from backports import zstd

MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_LAYER_GZIP = MEDIA_TYPE_LAYER + "+gzip"
MEDIA_TYPE_LAYER_ZSTD = MEDIA_TYPE_LAYER + "+zstd"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"

# ctr's OCI importer names an image after this annotation when present; otherwise it
# only has org.opencontainers.image.ref.name (a tag) and needs --base-name.
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# uname -m → GOARCH, so the image matches containerd's default platform and gets unpacked.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


@dataclass(frozen=True)
class Layer:
    """A layer blob with what the image needs to know about it."""

    blob: bytes
    media_type: str
    digest: str  # of the blob as stored
    diff_id: str  # of the uncompressed tar stream


def sha256_digest(data: bytes) -> str:
    """Return the OCI digest string of data."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def decompress(blob: bytes) -> bytes:
    """Return the uncompressed tar stream of a plain, gzip or zstd layer blob."""
    if blob.startswith(_GZIP_MAGIC):
        return gzip.decompress(blob)
    if blob.startswith(_ZSTD_MAGIC):
        return zstd.decompress(blob)
    return blob


def layer(blob: bytes) -> Layer:
    """Describe a layer blob, its media type told by its magic bytes."""
    if blob.startswith(_GZIP_MAGIC):
        media_type = MEDIA_TYPE_LAYER_GZIP
    elif blob.startswith(_ZSTD_MAGIC):
        media_type = MEDIA_TYPE_LAYER_ZSTD
    else:
        media_type = MEDIA_TYPE_LAYER
    return Layer(blob, media_type, sha256_digest(blob), sha256_digest(decompress(blob)))


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """Return the chain ID of each layer stack: the snapshot names containerd commits."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if chain:
            chain.append(sha256_digest(f"{chain[-1]} {diff_id}".encode()))
        else:
            chain.append(diff_id)
    return chain


def goarch() -> str:
    """Return this machine's architecture as Go (and so OCI) names it."""
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


def write_oci_archive(layers: Sequence[Layer], image_name: str) -> bytes:
    """Return a tar archive of an OCI image layout holding one image made of layers."""
    arch = goarch()
    config = _json({
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [lay.diff_id for lay in layers]},
    })
    manifest = _json({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": _descriptor(MEDIA_TYPE_CONFIG, config),
        "layers": [
            {"mediaType": lay.media_type, "digest": lay.digest, "size": len(lay.blob)}
            for lay in layers
        ],
    })
    manifest_descriptor = _descriptor(MEDIA_TYPE_MANIFEST, manifest)
    manifest_descriptor["platform"] = {"architecture": arch, "os": "linux"}
    manifest_descriptor["annotations"] = {
        ANNOTATION_IMAGE_NAME: image_name,
        ANNOTATION_REF_NAME: image_name.rpartition(":")[2],
    }
    index = _json({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [manifest_descriptor],
    })

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        _add(archive, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        _add(archive, "index.json", index)
        blobs = {sha256_digest(b): b for b in (config, manifest, *(lay.blob for lay in layers))}
        for digest, blob in blobs.items():
            _add(archive, "blobs/sha256/" + digest.removeprefix("sha256:"), blob)
    return out.getvalue()


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256_digest(blob), "size": len(blob)}


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))
