"""From an image's top descriptor to its layers, as containerd's ``images.Manifest``.

Indexes (OCI) and manifest lists (docker) are walked down to the best manifest for the
platform; a manifest reached directly is taken whatever its platform, as containerd
does, unless a platform was asked for explicitly. Docker schema 1 is refused.
"""

from __future__ import annotations

import re
from typing import Any

from layerdiff.errors import CorruptLayerError, NotFoundError, UnsupportedError
from layerdiff.image import mediatypes
from layerdiff.image.platforms import Platform, PlatformMatcher, normalize
from layerdiff.image.source import JSON_MAX, BlobStore, BlobStream, Image, Layer, parse_json
from layerdiff.oci import Descriptor

_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
#: Indexes nest in practice once at most; a hostile source must not recurse forever.
_MAX_DEPTH = 8


class BlobImageSource:
    """An ``ImageSource`` over content-addressed blobs (OCI layouts, registries)."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store

    @property
    def name(self) -> str:
        """The store's name."""
        return self._store.name

    def resolve(self, platform: Platform, *, strict: bool) -> Image:
        """Walk from the top descriptor to the manifest for ``platform`` and its config."""
        return resolve_image(self._store, platform, strict=strict)

    def open_layer(self, layer: Layer) -> BlobStream:
        """The layer's blob, by digest."""
        assert layer.digest is not None and layer.size is not None  # set for every blob
        return self._store.open(Descriptor(layer.media_type or "", layer.digest, layer.size))

    def close(self) -> None:
        """Close the store."""
        self._store.close()


def parse_descriptor(value: object, what: str) -> Descriptor:
    """A descriptor from its JSON object; ``CorruptLayerError`` if it is malformed."""
    if not isinstance(value, dict):
        raise CorruptLayerError(f"{what}: a descriptor is not a JSON object")
    media_type, digest, size = value.get("mediaType", ""), value.get("digest"), value.get("size")
    if not isinstance(media_type, str):
        raise CorruptLayerError(f"{what}: invalid mediaType {media_type!r}")
    if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
        raise CorruptLayerError(f"{what}: invalid or unsupported digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CorruptLayerError(f"{what}: invalid size {size!r} for {digest}")
    raw = value.get("annotations")
    annotations = (
        {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(raw, dict)
        else {}
    )
    return Descriptor(media_type, digest, size, annotations)


def resolve_image(store: BlobStore, platform: Platform, *, strict: bool) -> Image:
    """The image ``store`` holds, for ``platform``; see the module's docstring."""
    matcher = PlatformMatcher(platform)
    desc = store.top()
    desc_platform: Platform | None = None
    top = True
    for _ in range(_MAX_DEPTH):
        doc, media_type = _read_document(store, desc)
        if media_type in mediatypes.INDEXES:
            desc, desc_platform = _choose(doc, desc, matcher)
            top = False
            continue
        if media_type not in mediatypes.MANIFESTS:
            raise UnsupportedError(
                f"{store.name}: {desc.digest} has media type {media_type!r}, "
                "not an image index or manifest"
            )
        return _image(store, desc, doc, matcher, check=strict if top else desc_platform is None)
    raise CorruptLayerError(f"{store.name}: indexes nested more than {_MAX_DEPTH} deep")


def _read_document(store: BlobStore, desc: Descriptor) -> tuple[dict[str, Any], str]:
    if desc.media_type in mediatypes.DOCKER_SCHEMA1:
        raise _schema1(store, desc)
    what = f"{store.name}: {desc.digest}"
    doc = parse_json(store.read(desc, JSON_MAX), what)
    if doc.get("schemaVersion") == 1:
        raise _schema1(store, desc)
    declared = doc.get("mediaType", "")
    if not isinstance(declared, str):
        raise CorruptLayerError(f"{what}: invalid mediaType {declared!r}")
    # A descriptor without a media type: the document's own, else what its fields say.
    media_type = desc.media_type or declared or _guess(doc)
    # As containerd's validateMediaType: the document must be what its descriptor says.
    if declared and declared != media_type:
        raise CorruptLayerError(
            f"{what}: its mediaType is {declared}, its descriptor's {media_type}"
        )
    if media_type in mediatypes.MANIFESTS and "manifests" in doc:
        raise CorruptLayerError(f"{what}: a manifest ({media_type}) with a 'manifests' list")
    if media_type in mediatypes.INDEXES and ("config" in doc or "layers" in doc):
        raise CorruptLayerError(f"{what}: an index ({media_type}) with 'config' or 'layers'")
    return doc, media_type


def _guess(doc: dict[str, Any]) -> str:
    if "manifests" in doc:
        return mediatypes.OCI_INDEX
    return mediatypes.OCI_MANIFEST if "layers" in doc else ""


def _schema1(store: BlobStore, desc: Descriptor) -> UnsupportedError:
    return UnsupportedError(
        f"{store.name}: {desc.digest or 'the image'} is a Docker schema 1 manifest, which "
        "containerd 1.7 and layerdiff do not unpack: push the image again with a current Docker"
    )


def _choose(
    doc: dict[str, Any], index: Descriptor, matcher: PlatformMatcher
) -> tuple[Descriptor, Platform | None]:
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise CorruptLayerError(f"index {index.digest} has no 'manifests' list")
    ranked: list[tuple[int, int, Descriptor, Platform | None]] = []
    seen: list[str] = []
    for i, entry in enumerate(entries):
        desc = parse_descriptor(entry, f"index {index.digest}")
        platform = Platform.from_json(entry.get("platform"))
        seen.append(str(normalize(platform)) if platform else "unknown")
        if platform is None:
            ranked.append((len(entries) + 1, i, desc, None))  # containerd sorts these last
        elif (rank := matcher.rank(platform)) is not None:
            ranked.append((rank, i, desc, platform))
    if not ranked:
        available = ", ".join(sorted(set(seen))) or "none"
        raise NotFoundError(
            f"no image for platform {matcher.platform} in index {index.digest} "
            f"(available: {available})"
        )
    _, _, desc, platform = min(ranked, key=lambda r: (r[0], r[1]))
    return desc, platform


def _image(
    store: BlobStore,
    desc: Descriptor,
    doc: dict[str, Any],
    matcher: PlatformMatcher,
    *,
    check: bool,
) -> Image:
    what = f"manifest {desc.digest}"
    config_desc = parse_descriptor(doc.get("config"), what)
    config = parse_json(store.read(config_desc, JSON_MAX), f"image config {config_desc.digest}")
    platform = Platform.from_json(config) or Platform("", "")
    if check and not matcher.matches(platform):
        raise NotFoundError(
            f"{store.name}: the image is for platform {normalize(platform)}, "
            f"not {matcher.platform} (available: {normalize(platform)})"
        )
    entries = doc.get("layers")
    if not isinstance(entries, list):
        raise CorruptLayerError(f"{what} has no 'layers' list")
    blobs = [parse_descriptor(e, what) for e in entries]
    blobs = [b for b in blobs if mediatypes.is_layer(b.media_type)]
    diff_ids = config_diff_ids(config, config_desc.digest, len(blobs))
    layers = tuple(
        Layer(i, b.media_type, b.digest, b.size, diff_id)
        for i, (b, diff_id) in enumerate(zip(blobs, diff_ids, strict=True))
    )
    return Image(config_desc.digest, desc.digest, normalize(platform), layers)


def config_diff_ids(config: dict[str, Any], what: str, layers: int) -> list[str]:
    """The config's ``rootfs.diff_ids``, checked: one well-formed digest per layer."""
    rootfs = config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(
        isinstance(d, str) and _DIGEST_RE.match(d) for d in diff_ids
    ):
        raise CorruptLayerError(f"image config {what} has no valid rootfs.diff_ids")
    if len(diff_ids) != layers:
        raise CorruptLayerError(
            f"image config {what} lists {len(diff_ids)} diffIDs for {layers} layers"
        )
    return diff_ids
