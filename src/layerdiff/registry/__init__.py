"""Registry access over the OCI distribution API: references, auth, pull and push."""

from layerdiff.errors import PermissionDeniedError
from layerdiff.registry.auth import Credentials, docker_credentials
from layerdiff.registry.blob import BlobReader
from layerdiff.registry.client import (
    DOCKER_CONFIG,
    MANIFEST_MEDIA_TYPES,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    FetchedManifest,
    RegistryClient,
)
from layerdiff.registry.reference import Reference, parse_reference

__all__ = [
    "DOCKER_CONFIG",
    "MANIFEST_MEDIA_TYPES",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_MANIFEST",
    "BlobReader",
    "Credentials",
    "FetchedManifest",
    "PermissionDeniedError",
    "Reference",
    "RegistryClient",
    "docker_credentials",
    "parse_reference",
]
