"""Whole images: read them from OCI layouts, archives and registries, and unpack them.

``open_image(text)`` gives an ``ImageSource``; ``unpack_image(source, dest)`` applies
its layers, verified, into one tree (``flat``) or one overlay upperdir per layer
(``snapshots``). See docs/unpack.md.
"""

from layerdiff.image.archive import DockerArchive, open_archive
from layerdiff.image.open import open_image
from layerdiff.image.platforms import Platform, default_platform, normalize, parse_platform
from layerdiff.image.resolve import BlobImageSource, resolve_image
from layerdiff.image.source import BlobStore, Image, ImageSource, Layer
from layerdiff.image.unpack import MODES, UnpackResult, unpack_image

__all__ = [
    "MODES",
    "BlobImageSource",
    "BlobStore",
    "DockerArchive",
    "Image",
    "ImageSource",
    "Layer",
    "Platform",
    "UnpackResult",
    "default_platform",
    "normalize",
    "open_archive",
    "open_image",
    "parse_platform",
    "resolve_image",
    "unpack_image",
]
