"""From what a user types to an ``ImageSource``: paths and skopeo-style transports.

``DIR`` (an OCI layout), ``FILE`` (an OCI or ``docker save`` archive, told apart by
content), ``oci:DIR[:REF]``, ``oci-archive:FILE[:REF]``, ``docker-archive:FILE[:REF]``
and ``registry:HOST/NAME[:TAG][@DIGEST]``. As skopeo, the path ends at the first ``:``.
"""

from __future__ import annotations

import ipaddress
import os

from layerdiff.errors import InvalidArgumentError, NotFoundError
from layerdiff.image.archive import open_archive
from layerdiff.image.files import DirFiles
from layerdiff.image.layout import OciLayout
from layerdiff.image.registry import RegistryBlobs
from layerdiff.image.resolve import BlobImageSource
from layerdiff.image.source import ImageSource
from layerdiff.registry import RegistryClient, parse_reference

TRANSPORTS = ("oci", "oci-archive", "docker-archive", "registry")


def open_image(text: str, *, insecure_registry: bool = False) -> ImageSource:
    """The image ``text`` names; ``insecure_registry`` speaks plain HTTP to a registry on
    a loopback address (``localhost``, ``127.0.0.0/8``, ``[::1]``) and nowhere else."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in TRANSPORTS:
        return _open_path(text)
    if transport == "registry":
        ref = parse_reference(rest)
        if insecure_registry and not _is_loopback(ref.host):
            raise InvalidArgumentError(
                f"plain HTTP is allowed for loopback registries only, not {ref.host}"
            )
        return BlobImageSource(RegistryBlobs(RegistryClient(ref.host, insecure=insecure_registry),
                                             ref))
    path, _, image_ref = rest.partition(":")
    if not path:
        raise InvalidArgumentError(f"{text!r}: {transport}: needs a path")
    name = image_ref or None
    if transport == "oci":
        return BlobImageSource(OciLayout(DirFiles(path), name, path))
    return open_archive(path, name, kind="oci" if transport == "oci-archive" else "docker")


def _open_path(path: str) -> ImageSource:
    if os.path.isdir(path):
        return BlobImageSource(OciLayout(DirFiles(path), None, path))
    if os.path.lexists(path):
        return open_archive(path)
    raise NotFoundError(
        f"image {path!r}: no such file or directory (a registry image is registry:HOST/NAME:TAG)"
    )


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.removeprefix("[").partition("]")[0] if name.startswith("[") else name
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
