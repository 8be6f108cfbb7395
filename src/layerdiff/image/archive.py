"""Image archives: an OCI layout in a tar (``oci-archive``) and ``docker save`` output.

Both are read in place through a tar index (``TarFiles``), never extracted. The two are
told apart by content: an ``oci-layout`` file makes an OCI archive, a ``manifest.json``
without it a docker one (docker 25 and later writes both; either reading gives the same
image).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from layerdiff.errors import CorruptLayerError, InvalidArgumentError, NotFoundError
from layerdiff.image.files import Files, clean_name, read_file
from layerdiff.image.layout import OciLayout, check_digest, is_layout
from layerdiff.image.platforms import Platform, PlatformMatcher, normalize
from layerdiff.image.resolve import BlobImageSource, config_diff_ids
from layerdiff.image.source import (
    JSON_MAX,
    BlobStream,
    Image,
    ImageSource,
    Layer,
    load_json,
    parse_json,
)
from layerdiff.image.tarindex import TarFiles

# docker save names blobs blobs/sha256/HEX (docker 25+) or, for configs, HEX.json.
_NAMED_BY_DIGEST = re.compile(r"^(?:blobs/sha256/([a-f0-9]{64})|([a-f0-9]{64})\.json)$")


def open_archive(
    path: str | os.PathLike[str], ref: str | None = None, *, kind: str | None = None
) -> ImageSource:
    """The image in the archive at ``path``: ``kind`` ``"oci"`` or ``"docker"``, or
    (``None``) told by content. ``ref`` names one image when the archive has several."""
    files = TarFiles(path)
    try:
        name = os.fspath(path)
        oci = is_layout(files)
        docker = files.exists("manifest.json")
        if kind == "oci" or (kind is None and oci):
            return BlobImageSource(OciLayout(files, ref, name))
        if kind == "docker" or (kind is None and docker):
            return DockerArchive(files, ref)
        raise InvalidArgumentError(
            f"{name} is neither an OCI image archive (no oci-layout) nor a docker save "
            "archive (no manifest.json)"
        )
    except BaseException:
        files.close()
        raise


class DockerArchive:
    """An image of a ``docker save`` archive (its ``manifest.json``), an ``ImageSource``."""

    def __init__(self, files: Files, ref: str | None) -> None:
        self._files = files
        self._ref = ref
        self._paths: dict[int, str] = {}

    @property
    def name(self) -> str:
        """The archive's path."""
        return self._files.name

    def _entry(self) -> dict[str, Any]:
        data = read_file(self._files, "manifest.json", JSON_MAX)
        what = f"{self.name}: manifest.json"
        entries = load_json(data, what)
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise CorruptLayerError(f"{what} is not a list of images")
        if not entries:
            raise NotFoundError(f"{what} lists no image")
        tags = [t for e in entries for t in _tags(e)]
        if self._ref is not None:
            found = [e for e in entries if self._ref in _tags(e)]
            if not found:
                raise NotFoundError(
                    f"{self.name}: no image {self._ref!r} (images: {', '.join(tags) or 'untagged'})"
                )
            chosen: dict[str, Any] = found[0]
            return chosen
        if len(entries) > 1:
            raise InvalidArgumentError(
                f"{self.name} holds {len(entries)} images ({', '.join(tags) or 'untagged'}): "
                f"name one as {self.name}:REF"
            )
        entry: dict[str, Any] = entries[0]
        return entry

    def _path(self, value: object, what: str) -> str:
        path = clean_name(value) if isinstance(value, str) else None
        if path is None:
            raise CorruptLayerError(f"{self.name}: manifest.json: invalid {what} path {value!r}")
        if not self._files.exists(path):
            raise NotFoundError(f"{self.name}: {what} {path} is not in the archive")
        return path

    def resolve(self, platform: Platform, *, strict: bool) -> Image:
        """The archive's image; its platform is checked only when asked for (``strict``),
        as containerd unpacks an image that is not a manifest list whatever its platform."""
        entry = self._entry()
        config_path = self._path(entry.get("Config"), "config")
        config_bytes = read_file(self._files, config_path, JSON_MAX)
        named = _NAMED_BY_DIGEST.match(config_path)
        if named:
            check_digest(config_bytes, "sha256:" + (named[1] or named[2]), self.name)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        config = parse_json(config_bytes, f"{self.name}: image config {config_path}")
        image_platform = normalize(Platform.from_json(config) or Platform("", ""))
        if strict and not PlatformMatcher(platform).matches(image_platform):
            raise NotFoundError(
                f"{self.name}: the image is for platform {image_platform}, not "
                f"{normalize(platform)} (available: {image_platform})"
            )
        raw_layers = entry.get("Layers")
        if not isinstance(raw_layers, list):
            raise CorruptLayerError(f"{self.name}: manifest.json: no Layers list")
        paths = [self._path(p, f"layer {i}") for i, p in enumerate(raw_layers)]
        diff_ids = config_diff_ids(config, config_digest, len(paths))
        layers = []
        for i, (path, diff_id) in enumerate(zip(paths, diff_ids, strict=True)):
            named = _NAMED_BY_DIGEST.match(path)
            digest = "sha256:" + named[1] if named and named[1] else None
            layers.append(Layer(i, None, digest, self._files.size(path), diff_id))
        self._paths = dict(enumerate(paths))
        return Image(config_digest, None, image_platform, tuple(layers))

    def open_layer(self, layer: Layer) -> BlobStream:
        """The layer's file in the archive."""
        return self._files.open(self._paths[layer.index])

    def close(self) -> None:
        """Close the archive."""
        self._files.close()


def _tags(entry: dict[str, Any]) -> list[str]:
    tags = entry.get("RepoTags")
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
