"""``layerdiff unpack``: image forms, output, exit codes, one-line errors, registries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerdiff.registry import RegistryClient
from tests.support import images
from tests.support.cli import Run
from tests.support.layers import gzip, layer
from tests.support.ocilayout import goarch
from tests.support.registry import Registry, require_binary
from tests.support.tree import diff_trees, snapshot_tree

LAYERS = [gzip(layer(("dir", "etc/"), ("file", "etc/motd", {"data": b"hi"}))),
          layer(("file", "etc/.wh.motd"), ("file", "top", {"data": b"t"}))]



@pytest.fixture
def forms(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "images").mkdir()
    return images.all_forms(images.make_image(LAYERS), tmp_path / "images")


def test_flat_prints_one_line(run: Run, forms: dict[str, str], tmp_path: Path) -> None:
    img = images.make_image(LAYERS)
    code, out, err = run("unpack", forms["oci-archive"], str(tmp_path / "rootfs"))
    assert (code, err) == (0, "")
    platform = f"linux/{goarch()}"
    assert out == f"{img.config_digest} {platform} 2 layers {tmp_path / 'rootfs'}\n"
    assert (tmp_path / "rootfs/top").read_bytes() == b"t"
    assert not (tmp_path / "rootfs/etc/motd").exists()


@pytest.mark.root
def test_snapshots_print_layers_and_mount_options(
    run: Run, forms: dict[str, str], tmp_path: Path
) -> None:
    images.skip_unless_root()
    dest = tmp_path / "layers"
    code, out, _ = run("unpack", "--mode", "snapshots", f"docker-archive:{forms['docker-save']}",
                       str(dest))
    assert code == 0
    lines = out.splitlines()
    img = images.make_image(LAYERS)
    assert lines[1:3] == [f"{img.diff_ids[0]} {dest}/1", f"{img.diff_ids[1]} {dest}/2"]
    assert lines[3] == f"lowerdir={dest}/2:{dest}/1,upperdir={dest}/upper,workdir={dest}/work"


@pytest.mark.root
def test_json(run: Run, forms: dict[str, str], tmp_path: Path) -> None:
    images.skip_unless_root()
    code, out, _ = run("unpack", "--json", "--mode", "snapshots", f"oci:{forms['oci-layout']}",
                       str(tmp_path / "out"))
    assert code == 0
    result = json.loads(out)
    img = images.make_image(LAYERS)
    assert result["config"] == img.config_digest
    assert result["manifest"] == img.manifest_digest
    assert result["diff_ids"] == img.diff_ids
    assert result["layer_dirs"] == [str(tmp_path / "out/1"), str(tmp_path / "out/2")]
    assert result["mount_options"].startswith("lowerdir=")
    assert result["resumed"] == 0


def test_platform_choice(run: Run, tmp_path: Path) -> None:
    amd, arm = images.make_image(LAYERS, arch="amd64"), images.make_image(LAYERS[:1], arch="arm64")
    index = images.index_json([amd.manifest_descriptor(), arm.manifest_descriptor()])
    layout = images.write_dir(images.layout_files([amd, arm], index=index), tmp_path / "multi")
    code, out, _ = run("unpack", "--json", "--platform", "linux/arm64/v8", str(layout),
                       str(tmp_path / "out"))
    assert code == 0
    assert json.loads(out)["config"] == arm.config_digest
    code, _, err = run("unpack", "--platform", "linux/s390x", str(layout), str(tmp_path / "x"))
    assert code == 1
    assert err.count("\n") == 1
    assert "no image for platform linux/s390x" in err
    assert "linux/amd64, linux/arm64" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nowhere", "out"], "no such file or directory"),
        (["--platform", "a/b/c/d", "IMAGE", "out"], "invalid platform"),
        (["registry:UPPER/x:1", "out"], "invalid image reference"),
        (["oci-archive:", "out"], "needs a path"),
        (["IMAGE", "missing/out"], "the parent of"),
    ],
)
def test_errors_are_one_line(
    run: Run, forms: dict[str, str], tmp_path: Path, args: list[str], message: str
) -> None:
    args = [forms["oci-archive"] if a == "IMAGE" else a for a in args]
    args[-1] = str(tmp_path / args[-1])
    code, out, err = run("unpack", *args)
    assert (code, out) == (1, "")
    assert err.startswith("layerdiff: error: ")
    assert err.count("\n") == 1
    assert message in err


def test_corrupt_layer_exits_1_naming_the_layer(run: Run, tmp_path: Path) -> None:
    img = images.make_image(LAYERS)
    root = images.write_dir(images.layout_files([img]), tmp_path / "layout")
    bad = img.layers[1]
    (root / "blobs/sha256" / bad.digest.removeprefix("sha256:")).write_bytes(
        bad.blob.replace(b"top", b"pot")
    )
    code, _, err = run("unpack", str(root), str(tmp_path / "out"))
    assert code == 1
    assert err.count("\n") == 1
    assert f"layer 1 ({bad.digest}): blob has digest sha256:" in err


def test_usage_errors_exit_2(run: Run, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        run("unpack", "--mode", "merged", "x", str(tmp_path))
    assert exc.value.code == 2


def test_start_over(run: Run, forms: dict[str, str], tmp_path: Path) -> None:
    other = images.all_forms(images.make_image(LAYERS[:1]), tmp_path)["oci-archive"]
    assert run("unpack", forms["oci-archive"], str(tmp_path / "out"))[0] == 0
    code, _, err = run("unpack", other, str(tmp_path / "out"))
    assert code == 1
    assert "start over" in err
    assert run("unpack", "--start-over", other, str(tmp_path / "out"))[0] == 0


# ----------------------------------------------------------------------------- registry


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    require_binary()
    with Registry() as reg:
        yield reg


def test_registry_image_by_tag_and_digest(
    run: Run, registry: Registry, forms: dict[str, str], tmp_path: Path
) -> None:
    client = RegistryClient(registry.host, insecure=True, credentials=None)
    img = images.make_image(LAYERS, docker=True)
    digest = images.push(client, "test/app", "1", img)
    assert run("unpack", forms["oci-layout"], str(tmp_path / "local"))[0] == 0
    for ref, dest in ((f"{registry.host}/test/app:1", "tag"),
                      (f"{registry.host}/test/app@{digest}", "digest")):
        code, _, err = run("unpack", "--insecure-registry", f"registry:{ref}",
                           str(tmp_path / dest))
        assert (code, err) == (0, "")
        assert diff_trees(snapshot_tree(tmp_path / "local"), snapshot_tree(tmp_path / dest),
                          ignore_dir_mtimes=True) == []


def test_registry_multi_platform_index(run: Run, registry: Registry, tmp_path: Path) -> None:
    client = RegistryClient(registry.host, insecure=True, credentials=None)
    amd, arm = images.make_image(LAYERS, arch="amd64"), images.make_image(LAYERS[:1], arch="arm64")
    for img in (amd, arm):
        images.push(client, "test/multi", img.manifest_digest, img)
    index = images.index_json([amd.manifest_descriptor(), arm.manifest_descriptor()])
    client.push_manifest("test/multi", "latest", images.OCI_INDEX, index)
    code, out, err = run("unpack", "--json", "--insecure-registry", "--platform", "linux/arm64",
                         f"registry:{registry.host}/test/multi", str(tmp_path / "out"))
    assert (code, err) == (0, "")
    assert json.loads(out)["config"] == arm.config_digest


def test_registry_blob_mismatch_names_layer(run: Run, registry: Registry, tmp_path: Path) -> None:
    client = RegistryClient(registry.host, insecure=True, credentials=None)
    img = images.make_image(LAYERS)
    images.push(client, "test/bad", "1", img)
    bad = img.layers[1]
    registry.blob_path(bad.digest).write_bytes(bad.blob.replace(b"top", b"pot"))
    code, _, err = run("unpack", "--insecure-registry", f"registry:{registry.host}/test/bad:1",
                       str(tmp_path / "out"))
    assert code == 1
    assert f"layer 1 ({bad.digest})" in err
    assert err.count("\n") == 1
