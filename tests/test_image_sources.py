"""Reading images from OCI layout directories, OCI archives and docker save archives,
including hostile ones: every name and size inside them is the attacker's."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from layerdiff.errors import (
    CorruptLayerError,
    InvalidArgumentError,
    LayerdiffError,
    LimitExceededError,
    NotFoundError,
    SourceError,
    UnsupportedError,
)
from layerdiff.image import default_platform, open_image
from layerdiff.image.source import JSON_MAX, ImageSource
from layerdiff.image.tarindex import TarFiles
from tests.support import images
from tests.support.images import make_image
from tests.support.layers import layer

LAYER = layer(("file", "f", {"data": b"f"}))
LAYER2 = layer(("file", "g", {"data": b"g"}))


def _resolve(source: ImageSource) -> str:
    try:
        return source.resolve(default_platform(), strict=False).config_digest
    finally:
        source.close()


def _read_layers(source: ImageSource) -> list[bytes]:
    try:
        image = source.resolve(default_platform(), strict=False)
        out = []
        for lay in image.layers:
            stream = source.open_layer(lay)
            try:
                out.append(stream.read(1 << 30))
            finally:
                stream.close()
        return out
    finally:
        source.close()


@pytest.mark.parametrize("form", ["oci-layout", "oci-archive", "docker-save", "docker-save-blobs"])
def test_every_form_reads_the_same_image(tmp_path: Path, form: str) -> None:
    img = make_image([LAYER, gzip.compress(LAYER2)])
    path = images.all_forms(img, tmp_path)[form]
    source = open_image(path)
    image = source.resolve(default_platform(), strict=False)
    assert image.config_digest == img.config_digest
    assert [lay.diff_id for lay in image.layers] == img.diff_ids
    source.close()
    assert _read_layers(open_image(path)) == [lay.blob for lay in img.layers]


def test_transport_prefixes(tmp_path: Path) -> None:
    img = make_image([LAYER])
    forms = images.all_forms(img, tmp_path)
    for text in (
        f"oci:{forms['oci-layout']}",
        f"oci:{forms['oci-layout']}:latest",
        f"oci-archive:{forms['oci-archive']}",
        f"oci-archive:{forms['oci-archive']}:latest",
        f"docker-archive:{forms['docker-save']}",
        f"docker-archive:{forms['docker-save']}:test/image:latest",
        f"docker-archive:{forms['docker-save-blobs']}",
    ):
        assert _resolve(open_image(text)) == img.config_digest, text


def test_docker_25_archive_with_both_layouts_reads_either_way(tmp_path: Path) -> None:
    img = make_image([LAYER])
    files = {**images.layout_files([img]), **images.docker_files(img, blobs_dir=True)}
    path = images.write_tar(files, tmp_path / "both.tar")
    assert _resolve(open_image(str(path))) == img.config_digest
    assert _resolve(open_image(f"docker-archive:{path}")) == img.config_digest


def test_layout_picks_images_by_ref_name(tmp_path: Path) -> None:
    one, two = make_image([LAYER]), make_image([LAYER2])
    files = images.layout_files([one, two], refs=["one", "two"])
    layout = str(images.write_dir(files, tmp_path / "layout"))
    archive = str(images.write_tar(files, tmp_path / "oci.tar"))
    assert _resolve(open_image(f"oci:{layout}:two")) == two.config_digest
    assert _resolve(open_image(f"oci-archive:{archive}:one")) == one.config_digest
    with pytest.raises(InvalidArgumentError, match=r"several images .*one, two"):
        _resolve(open_image(layout))
    with pytest.raises(NotFoundError, match=r"no image 'three'.*one, two"):
        _resolve(open_image(f"oci:{layout}:three"))


def test_docker_archive_picks_images_by_tag(tmp_path: Path) -> None:
    one, two = make_image([LAYER]), make_image([LAYER2])
    a, b = images.docker_files(one, "a:1"), images.docker_files(two, "b:2")
    manifest = json.loads(a["manifest.json"]) + json.loads(b["manifest.json"])
    files = {**a, **b, "manifest.json": json.dumps(manifest).encode()}
    path = str(images.write_tar(files, tmp_path / "docker.tar"))
    assert _resolve(open_image(f"docker-archive:{path}:b:2")) == two.config_digest
    with pytest.raises(InvalidArgumentError, match="2 images"):
        _resolve(open_image(path))
    with pytest.raises(NotFoundError, match="a:1, b:2"):
        _resolve(open_image(f"docker-archive:{path}:c:3"))


# ------------------------------------------------------------------------------ hostile


def _tar_with(members: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_member_names_that_climb_or_are_absolute_are_not_files_of_the_image(
    tmp_path: Path,
) -> None:
    img = make_image([LAYER])
    good = images.docker_files(img)
    config_name = next(n for n in good if n.endswith(".json") and n != "manifest.json")
    # The archive's only config is reachable by hostile names alone.
    members = [_file("../" + config_name, img.config), _file("/" + config_name, img.config)]
    members += [_file(n, d) for n, d in good.items() if n != config_name]
    path = tmp_path / "evil.tar"
    path.write_bytes(_tar_with(members))
    with pytest.raises(NotFoundError, match="not in the archive"):
        _resolve(open_image(str(path)))


@pytest.mark.parametrize("bad", ["../x/layer.tar", "/etc/passwd", "a/../../b", ""])
def test_manifest_json_paths_that_climb_are_refused(tmp_path: Path, bad: str) -> None:
    img = make_image([LAYER])
    files = images.docker_files(img)
    manifest = json.loads(files["manifest.json"])
    manifest[0]["Layers"] = [bad]
    files["manifest.json"] = json.dumps(manifest).encode()
    path = images.write_tar(files, tmp_path / "evil.tar")
    with pytest.raises(CorruptLayerError, match="invalid layer 0 path"):
        _resolve(open_image(str(path)))


def test_dot_slash_member_names_are_accepted(tmp_path: Path) -> None:
    img = make_image([LAYER])
    files = {"./" + n: d for n, d in images.layout_files([img]).items()}
    path = images.write_tar(files, tmp_path / "dots.tar")
    assert _resolve(open_image(str(path))) == img.config_digest


def test_symlink_members_are_not_files(tmp_path: Path) -> None:
    img = make_image([LAYER])
    files = images.layout_files([img])
    link = tarfile.TarInfo("index.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    members = [_file(n, d) for n, d in files.items() if n != "index.json"] + [(link, None)]
    path = tmp_path / "link.tar"
    path.write_bytes(_tar_with(members))
    with pytest.raises(NotFoundError, match=r"index\.json"):
        _resolve(open_image(str(path)))


def test_symlinked_blobs_directory_is_refused(tmp_path: Path) -> None:
    img = make_image([LAYER])
    real = images.write_dir(images.layout_files([img]), tmp_path / "real")
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("oci-layout", "index.json"):
        (evil / name).write_bytes((real / name).read_bytes())
    os.symlink(real / "blobs", evil / "blobs")
    with pytest.raises(SourceError, match="cannot open blobs"):
        _resolve(open_image(str(evil)))


def test_symlinked_blob_is_refused(tmp_path: Path) -> None:
    img = make_image([LAYER])
    root = images.write_dir(images.layout_files([img]), tmp_path / "layout")
    blob = root / "blobs/sha256" / img.manifest_digest.removeprefix("sha256:")
    target = tmp_path / "elsewhere"
    blob.rename(target)
    os.symlink(target, blob)
    with pytest.raises(SourceError):
        _resolve(open_image(str(root)))


def test_huge_json_is_refused_before_it_is_read(tmp_path: Path) -> None:
    img = make_image([LAYER])
    files = images.layout_files([img])
    files["index.json"] = b" " * (JSON_MAX + 1)
    path = images.write_tar(files, tmp_path / "huge.tar")
    with pytest.raises(LimitExceededError, match=r"index\.json"):
        _resolve(open_image(str(path)))
    files = images.docker_files(img)
    files["manifest.json"] = b"[" + b" " * JSON_MAX + b"]"
    path = images.write_tar(files, tmp_path / "huge-docker.tar")
    with pytest.raises(LimitExceededError, match=r"manifest\.json"):
        _resolve(open_image(str(path)))


def test_descriptor_sizes_past_the_limit_are_refused(tmp_path: Path) -> None:
    img = make_image([LAYER])
    desc = img.manifest_descriptor()
    desc["size"] = JSON_MAX + 1
    files = images.layout_files([img], index=images.index_json([desc]))
    path = str(images.write_dir(files, tmp_path / "layout"))
    with pytest.raises(CorruptLayerError, match="expected"):
        _resolve(open_image(path))


@pytest.mark.parametrize(
    "index",
    [b"not json", b"[1, 2]", b'{"manifests": 3}', b'{"manifests": [{"digest": "md5:x"}]}',
     b"[" * 100000],
)
def test_malformed_index_json_is_refused(tmp_path: Path, index: bytes) -> None:
    img = make_image([LAYER])
    files = images.layout_files([img], index=index)
    path = str(images.write_dir(files, tmp_path / "layout"))
    with pytest.raises(CorruptLayerError):
        _resolve(open_image(path))


def test_blob_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    img = make_image([LAYER])
    root = images.write_dir(images.layout_files([img]), tmp_path / "layout")
    config = root / "blobs/sha256" / img.config_digest.removeprefix("sha256:")
    config.write_bytes(img.config.replace(b"linux", b"Linux"))
    with pytest.raises(CorruptLayerError, match=f"expected {img.config_digest}"):
        _resolve(open_image(str(root)))


def test_docker_config_named_by_digest_is_checked(tmp_path: Path) -> None:
    img = make_image([LAYER])
    files = images.docker_files(img)
    name = img.config_digest.removeprefix("sha256:") + ".json"
    files[name] = img.config.replace(b"linux", b"Linux")
    path = images.write_tar(files, tmp_path / "docker.tar")
    with pytest.raises(CorruptLayerError, match=f"expected {img.config_digest}"):
        _resolve(open_image(str(path)))


def test_compressed_archives_are_refused_with_advice(tmp_path: Path) -> None:
    img = make_image([LAYER])
    path = tmp_path / "image.tar.gz"
    path.write_bytes(gzip.compress(images.tar_bytes(images.layout_files([img]))))
    with pytest.raises(UnsupportedError, match="gzip-compressed: decompress it first"):
        open_image(str(path))


@pytest.mark.parametrize("data", [b"", b"garbage" * 100, b"\0" * 10])
def test_not_an_archive(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "x.tar"
    path.write_bytes(data)
    with pytest.raises(LayerdiffError):
        open_image(str(path))


def test_truncated_archive_member_is_a_read_error(tmp_path: Path) -> None:
    img = make_image([LAYER])
    data = images.tar_bytes(images.layout_files([img]))
    path = tmp_path / "cut.tar"
    path.write_bytes(data)
    files = TarFiles(path)
    try:
        name = files.names()[-1]
        os.truncate(path, files._members[name][0] + 1)  # cut inside its data
        stream = files.open(name)
        with pytest.raises(SourceError, match="ends"):
            while stream.read(1 << 20):
                pass
    finally:
        files.close()


def test_member_count_is_bounded(tmp_path: Path) -> None:
    path = images.write_tar({f"f{i}": b"" for i in range(20)}, tmp_path / "many.tar")
    with pytest.raises(LimitExceededError, match="more than 10 members"):
        TarFiles(path, max_members=10)


def test_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="registry:HOST"):
        open_image(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="not an OCI image layout"):
        _resolve(open_image(str(tmp_path / "empty")))
    with pytest.raises(InvalidArgumentError, match="neither"):
        open_image(str(images.write_tar({"x": b"y"}, tmp_path / "other.tar")))
    with pytest.raises(InvalidArgumentError, match="loopback"):
        open_image("registry:example.com/a:1", insecure_registry=True)
