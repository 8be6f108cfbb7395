"""Resolving an image: platforms as containerd spells and matches them, indexes and
manifest lists down to one manifest, and the media types refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from layerdiff.errors import (
    CorruptLayerError,
    InvalidArgumentError,
    NotFoundError,
    UnsupportedError,
)
from layerdiff.image import Platform, normalize, open_image, parse_platform
from layerdiff.image.platforms import PlatformMatcher, default_platform
from tests.support import images
from tests.support.images import ImageParts, make_image
from tests.support.layers import layer
from tests.support.ocilayout import sha256_digest

LAYER = layer(("file", "f", {"data": b"f"}))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (("linux", "x86_64", ""), ("linux", "amd64", "")),
        (("linux", "x86-64", "v1"), ("linux", "amd64", "")),
        (("linux", "amd64", "v3"), ("linux", "amd64", "v3")),
        (("linux", "aarch64", ""), ("linux", "arm64", "")),
        (("linux", "arm64", "v8"), ("linux", "arm64", "")),
        (("linux", "arm64", "8"), ("linux", "arm64", "")),
        (("linux", "arm", ""), ("linux", "arm", "v7")),
        (("linux", "arm", "6"), ("linux", "arm", "v6")),
        (("linux", "armhf", ""), ("linux", "arm", "v7")),
        (("linux", "armel", ""), ("linux", "arm", "v6")),
        (("linux", "i386", "x"), ("linux", "386", "")),
        (("Linux", "S390X", ""), ("linux", "s390x", "")),
        (("macos", "arm64", ""), ("darwin", "arm64", "")),
    ],
)
def test_normalize_as_containerd(
    given: tuple[str, str, str], expected: tuple[str, str, str]
) -> None:
    assert normalize(Platform(*given)) == Platform(*expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/armv7l/", None),
        ("", None),
        ("a/b/c/d", None),
        ("linux/am d64", None),
        ("notanarch", None),
    ],
)
def test_parse_platform(text: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(InvalidArgumentError):
            parse_platform(text)
    else:
        assert str(parse_platform(text)) == expected


def test_parse_one_word_is_an_os_or_an_architecture() -> None:
    here = default_platform()
    assert parse_platform("linux") == here
    assert parse_platform("s390x") == Platform(here.os, "s390x")


def test_default_platform_is_this_machine() -> None:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    assert default_platform().os == "linux"
    assert default_platform().architecture == arch


@pytest.mark.parametrize(
    ("host", "candidate", "rank"),
    [
        ("linux/amd64", "linux/amd64", 0),
        ("linux/amd64", "linux/386", 1),
        ("linux/amd64", "linux/arm64", None),
        ("linux/amd64", "windows/amd64", None),
        ("linux/amd64/v3", "linux/amd64/v2", 1),
        ("linux/amd64/v3", "linux/amd64", 2),
        ("linux/arm64", "linux/arm64/v8", 0),
        ("linux/arm64", "linux/arm/v8", 1),
        ("linux/arm64", "linux/arm/v7", 2),
        ("linux/arm64", "linux/arm/v5", 4),
        ("linux/arm/v7", "linux/arm/v6", 1),
        ("linux/arm/v7", "linux/arm/v8", None),
    ],
)
def test_matcher_ranks_what_the_machine_runs(host: str, candidate: str, rank: int | None) -> None:
    assert PlatformMatcher(parse_platform(host)).rank(parse_platform(candidate)) == rank


# ------------------------------------------------------------------- indexes, manifests


def _layout(tmp_path: Path, imgs: list[ImageParts], index: bytes) -> str:
    return str(images.write_dir(images.layout_files(imgs, index=index), tmp_path / "layout"))


def _multi(tmp_path: Path, *, docker: bool = False) -> tuple[str, dict[str, ImageParts]]:
    variants = {
        "linux/amd64": make_image([LAYER], arch="amd64", docker=docker),
        "linux/arm64/v8": make_image([LAYER], arch="arm64", variant="v8", docker=docker),
        "linux/arm/v7": make_image([LAYER], arch="arm", variant="v7", docker=docker),
        "linux/386": make_image([LAYER], arch="386", docker=docker),
    }
    unknown = make_image([LAYER], arch="unknown", os="unknown")
    entries = [img.manifest_descriptor() for img in variants.values()]
    entries.append(unknown.manifest_descriptor())  # buildx's attestation manifests look so
    index = images.index_json(entries, images.DOCKER_LIST if docker else images.OCI_INDEX)
    top = images.index_json([{**images.descriptor(
        images.DOCKER_LIST if docker else images.OCI_INDEX, index)}])
    files = images.layout_files([*variants.values(), unknown], index=top,
                                extra_blobs={sha256_digest(index): index})
    return str(images.write_dir(files, tmp_path / "layout")), variants


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-manifest-list"])
@pytest.mark.parametrize(
    ("wanted", "picked"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64", "linux/arm64/v8"),
        ("linux/arm64/v8", "linux/arm64/v8"),
        ("linux/aarch64", "linux/arm64/v8"),
        ("linux/arm/v7", "linux/arm/v7"),
        ("linux/arm/v8", "linux/arm/v7"),
        ("linux/386", "linux/386"),
    ],
)
def test_index_resolves_the_best_platform(
    tmp_path: Path, docker: bool, wanted: str, picked: str
) -> None:
    path, variants = _multi(tmp_path, docker=docker)
    image = open_image(path).resolve(parse_platform(wanted), strict=True)
    assert image.manifest_digest == variants[picked].manifest_digest
    assert image.config_digest == variants[picked].config_digest
    assert str(image.platform) == str(parse_platform(picked))


def test_no_platform_match_names_the_platform_and_what_is_there(tmp_path: Path) -> None:
    path, _ = _multi(tmp_path)
    with pytest.raises(NotFoundError) as err:
        open_image(path).resolve(parse_platform("linux/s390x"), strict=True)
    message = str(err.value)
    assert "linux/s390x" in message
    for available in ("linux/amd64", "linux/arm64", "linux/arm/v7", "linux/386"):
        assert available in message


def test_a_lone_manifest_is_taken_whatever_its_platform_unless_one_is_asked(
    tmp_path: Path,
) -> None:
    img = make_image([LAYER], arch="s390x")
    # index.json's entry without a platform: the manifest is reached "directly".
    path = _layout(tmp_path, [img], images.index_json([img.manifest_descriptor(platform=False)]))
    assert open_image(path).resolve(default_platform(), strict=False).config_digest == \
        img.config_digest
    with pytest.raises(NotFoundError, match="linux/s390x"):
        open_image(path).resolve(parse_platform("linux/amd64"), strict=True)


def test_index_entries_without_platform_are_checked_against_their_config(
    tmp_path: Path,
) -> None:
    other = make_image([LAYER], arch="s390x")
    inner = images.index_json([other.manifest_descriptor(platform=False)])
    top = images.index_json([images.descriptor(images.OCI_INDEX, inner)])
    files = images.layout_files([other], index=top, extra_blobs={sha256_digest(inner): inner})
    path = str(images.write_dir(files, tmp_path / "layout"))
    with pytest.raises(NotFoundError, match="s390x"):
        open_image(path).resolve(parse_platform("linux/amd64"), strict=False)
    image = open_image(path).resolve(parse_platform("linux/s390x"), strict=False)
    assert image.config_digest == other.config_digest


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
    ],
)
def test_schema1_is_refused_clearly(tmp_path: Path, media_type: str) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "name": "x", "tag": "1", "fsLayers": []}).encode()
    desc = images.descriptor(media_type, schema1)
    files = images.layout_files([], index=images.index_json([desc]),
                                extra_blobs={desc["digest"]: schema1})
    path = str(images.write_dir(files, tmp_path / "layout"))
    with pytest.raises(UnsupportedError, match="schema 1"):
        open_image(path).resolve(default_platform(), strict=False)


def test_schema1_behind_a_manifest_media_type_is_refused(tmp_path: Path) -> None:
    schema1 = json.dumps({"schemaVersion": 1, "fsLayers": []}).encode()
    desc = images.descriptor(images.OCI_MANIFEST, schema1)
    files = images.layout_files([], index=images.index_json([desc]),
                                extra_blobs={desc["digest"]: schema1})
    path = str(images.write_dir(files, tmp_path / "layout"))
    with pytest.raises(UnsupportedError, match="schema 1"):
        open_image(path).resolve(default_platform(), strict=False)


def test_docker_media_types_resolve(tmp_path: Path) -> None:
    img = make_image([LAYER], docker=True)
    path = _layout(tmp_path, [img], images.index_json([img.manifest_descriptor()]))
    image = open_image(path).resolve(default_platform(), strict=False)
    assert [lay.media_type for lay in image.layers] == [images.DOCKER_LAYER]
    assert [lay.diff_id for lay in image.layers] == img.diff_ids


def test_a_document_that_is_not_what_its_descriptor_says_is_refused(tmp_path: Path) -> None:
    img = make_image([LAYER])
    desc = images.descriptor(images.OCI_INDEX, img.manifest)  # a manifest called an index
    path = _layout(tmp_path, [img], images.index_json([desc]))
    with pytest.raises(CorruptLayerError, match="mediaType"):
        open_image(path).resolve(default_platform(), strict=False)


def test_diff_ids_must_match_the_layers_in_number(tmp_path: Path) -> None:
    img = make_image([LAYER], diff_ids=[])
    path = _layout(tmp_path, [img], images.index_json([img.manifest_descriptor()]))
    with pytest.raises(CorruptLayerError, match="0 diffIDs for 1 layers"):
        open_image(path).resolve(default_platform(), strict=False)


def test_non_layer_blobs_of_a_manifest_are_skipped(tmp_path: Path) -> None:
    img = make_image([LAYER])
    manifest = json.loads(img.manifest)
    manifest["layers"].append({"mediaType": "application/vnd.example.sbom+json",
                               "digest": "sha256:" + "0" * 64, "size": 3})
    img.manifest = images.canonical(manifest)
    path = _layout(tmp_path, [img], images.index_json([img.manifest_descriptor()]))
    image = open_image(path).resolve(default_platform(), strict=False)
    assert len(image.layers) == 1


def test_unknown_top_media_type_is_unsupported(tmp_path: Path) -> None:
    blob = b'{"hello": 1}'
    desc = images.descriptor("application/vnd.example+json", blob)
    files = images.layout_files([], index=images.index_json([desc]),
                                extra_blobs={desc["digest"]: blob})
    path = str(images.write_dir(files, tmp_path / "layout"))
    with pytest.raises(UnsupportedError, match="not an image index or manifest"):
        open_image(path).resolve(default_platform(), strict=False)
