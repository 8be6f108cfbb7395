"""Test images in every form ``layerdiff unpack`` reads: OCI layout directories, OCI
archives, ``docker save`` archives (legacy ``ID/layer.tar`` and docker 25's
``blobs/sha256``), and registries.

An image is built from layer blobs (``tests.support.ocilayout.layer`` describes them);
a form is a mapping of file names to bytes, written out as a directory or a tar.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from layerdiff.registry import RegistryClient
from tests.support import ocilayout
from tests.support.ocilayout import Layer, sha256_digest

OCI_MANIFEST = ocilayout.MEDIA_TYPE_MANIFEST
OCI_INDEX = ocilayout.MEDIA_TYPE_INDEX
OCI_CONFIG = ocilayout.MEDIA_TYPE_CONFIG
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
REF_NAME = ocilayout.ANNOTATION_REF_NAME

Files = dict[str, bytes]


def skip_unless_root(mode: str = "snapshots") -> None:
    """Skip the calling test if ``mode`` is snapshots and we are not root: overlay
    upperdirs hold whiteouts (0/0 devices) and ``trusted.overlay.*`` xattrs."""
    if mode == "snapshots" and os.geteuid() != 0:
        pytest.skip("snapshots mode writes whiteout devices and trusted.* xattrs: needs root")


def canonical(value: object) -> bytes:
    """``value`` as compact JSON, keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def descriptor(media_type: str, blob: bytes, **extra: Any) -> dict[str, Any]:
    """The descriptor JSON of ``blob``."""
    return {"mediaType": media_type, "digest": sha256_digest(blob), "size": len(blob), **extra}


@dataclass
class ImageParts:
    """One image: its layers, config and manifest, and the blobs they make."""

    layers: list[Layer]
    config: bytes
    manifest: bytes
    manifest_media_type: str
    platform: dict[str, str]
    extra_blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def config_digest(self) -> str:
        """The image ID."""
        return sha256_digest(self.config)

    @property
    def manifest_digest(self) -> str:
        """The manifest's digest."""
        return sha256_digest(self.manifest)

    @property
    def diff_ids(self) -> list[str]:
        """The layers' diffIDs."""
        return [lay.diff_id for lay in self.layers]

    def blobs(self) -> dict[str, bytes]:
        """Every blob of the image by digest."""
        out = {sha256_digest(b): b for b in (self.config, self.manifest)}
        out.update({lay.digest: lay.blob for lay in self.layers})
        out.update(self.extra_blobs)
        return out

    def manifest_descriptor(
        self, annotations: Mapping[str, str] | None = None, *, platform: bool = True
    ) -> dict[str, Any]:
        """The manifest's descriptor for an index (with the image's platform)."""
        desc = descriptor(self.manifest_media_type, self.manifest)
        if platform:
            desc["platform"] = dict(self.platform)
        if annotations:
            desc["annotations"] = dict(annotations)
        return desc


def make_image(
    blobs: Sequence[bytes],
    *,
    arch: str | None = None,
    os: str = "linux",
    variant: str | None = None,
    docker: bool = False,
    diff_ids: Sequence[str] | None = None,
    layer_media_type: str | None = None,
) -> ImageParts:
    """An image of ``blobs`` (bottom first) for ``os/arch[/variant]`` (default: this
    machine's architecture); ``docker`` uses docker's media types; ``diff_ids`` overrides
    the config's (for mismatch tests)."""
    layers = [ocilayout.layer(b) for b in blobs]
    platform = {"os": os, "architecture": arch or ocilayout.goarch()}
    if variant:
        platform["variant"] = variant
    config = canonical({
        **platform,
        "config": {},
        "rootfs": {"type": "layers",
                   "diff_ids": list(diff_ids) if diff_ids is not None else
                   [lay.diff_id for lay in layers]},
    })
    manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST

    def layer_type(lay: Layer) -> str:
        if layer_media_type:
            return layer_media_type
        if docker:
            return DOCKER_LAYER_GZIP if lay.media_type.endswith("+gzip") else DOCKER_LAYER
        return lay.media_type

    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [
            {"mediaType": layer_type(lay), "digest": lay.digest, "size": len(lay.blob)}
            for lay in layers
        ],
    })
    return ImageParts(layers, config, manifest, manifest_type, platform)


def index_json(entries: Sequence[Mapping[str, Any]], media_type: str = OCI_INDEX) -> bytes:
    """An index (or docker manifest list) of descriptor ``entries``."""
    return canonical({"schemaVersion": 2, "mediaType": media_type, "manifests": list(entries)})


def layout_files(
    images: Sequence[ImageParts],
    *,
    refs: Sequence[str | None] | None = None,
    index: bytes | None = None,
    extra_blobs: Mapping[str, bytes] | None = None,
) -> Files:
    """An OCI layout holding ``images`` (each named by ``refs[i]``, default ``latest``
    for a single image), or with the given ``index.json`` bytes."""
    files: Files = {"oci-layout": canonical({"imageLayoutVersion": "1.0.0"})}
    if index is None:
        names = refs if refs is not None else ["latest"] * len(images)
        entries = []
        for image, ref in zip(images, names, strict=True):
            entries.append(image.manifest_descriptor({REF_NAME: ref} if ref else None))
        index = index_json(entries)
    files["index.json"] = index
    blobs: dict[str, bytes] = {}
    for image in images:
        blobs.update(image.blobs())
    blobs.update(extra_blobs or {})
    for digest, blob in blobs.items():
        files["blobs/sha256/" + digest.removeprefix("sha256:")] = blob
    return files


def docker_files(image: ImageParts, tag: str = "test/image:latest", *, blobs_dir: bool = False
                 ) -> Files:
    """``docker save`` output for ``image``: legacy (``ID.json``, ``ID/layer.tar``), or
    with ``blobs_dir`` as docker 25 writes it (``blobs/sha256/HEX``)."""
    files: Files = {}
    config_hex = image.config_digest.removeprefix("sha256:")
    if blobs_dir:
        config_name = f"blobs/sha256/{config_hex}"
        layer_names = [f"blobs/sha256/{lay.digest.removeprefix('sha256:')}" for lay in image.layers]
    else:
        config_name = f"{config_hex}.json"
        layer_names = [
            f"{hashlib.sha256(f'{i}{lay.digest}'.encode()).hexdigest()}/layer.tar"
            for i, lay in enumerate(image.layers)
        ]
    files[config_name] = image.config
    for name, lay in zip(layer_names, image.layers, strict=True):
        files[name] = lay.blob
    files["manifest.json"] = canonical(
        [{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]
    )
    return files


def write_dir(files: Mapping[str, bytes], root: Path) -> Path:
    """Write ``files`` under ``root``; returns ``root``."""
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def tar_bytes(files: Mapping[str, bytes], *, extra: Sequence[tarfile.TarInfo] = ()) -> bytes:
    """A tar archive of ``files`` (plus raw members ``extra``), in order."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info)
    return out.getvalue()


def write_tar(files: Mapping[str, bytes], path: Path) -> Path:
    """Write ``files`` as a tar archive at ``path``; returns ``path``."""
    path.write_bytes(tar_bytes(files))
    return path


def all_forms(image: ImageParts, base: Path, tag: str = "test/image:latest") -> dict[str, str]:
    """``image`` as an OCI layout directory, an OCI archive, and docker save archives
    (legacy and docker 25), under ``base``; the IMAGE argument of each, by form."""
    layout = layout_files([image])
    return {
        "oci-layout": str(write_dir(layout, base / "layout")),
        "oci-archive": str(write_tar(layout, base / "oci.tar")),
        "docker-save": str(write_tar(docker_files(image, tag), base / "docker.tar")),
        "docker-save-blobs": str(
            write_tar(docker_files(image, tag, blobs_dir=True), base / "docker25.tar")
        ),
    }


def push(client: RegistryClient, name: str, tag: str, image: ImageParts) -> str:
    """Push ``image`` to ``name:tag``; the manifest's digest."""
    for digest, blob in image.blobs().items():
        if digest != image.manifest_digest:
            client.push_blob(name, blob)
    return client.push_manifest(name, tag, image.manifest_media_type, image.manifest)


def push_index(
    client: RegistryClient, name: str, tag: str, members: Sequence[ImageParts],
    media_type: str = OCI_INDEX,
) -> str:
    """Push ``members`` (by digest) and an index of them (with their platforms) as
    ``name:tag``; the index's digest."""
    for image in members:
        push(client, name, image.manifest_digest, image)
    index = index_json([image.manifest_descriptor() for image in members], media_type)
    return client.push_manifest(name, tag, media_type, index)
