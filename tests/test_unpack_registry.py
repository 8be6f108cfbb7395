"""``layerdiff unpack registry:...`` end to end: images pushed with layerdiff's own client
to a real registry (Debian's ``docker-registry``), unpacked by the real command in a
subprocess, and compared with containerd 1.7 pulling the same image from the same
registry (``ctr images pull --plain-http``). Anonymous, with token auth (credentials from
``DOCKER_CONFIG``), through a proxy that drops a connection mid-blob; a tampered blob, a
wrong diffID and a missing platform fail with one line naming what is wrong.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerdiff.image.open import open_image
from layerdiff.image.platforms import default_platform
from layerdiff.image.verify import layer_blob
from layerdiff.registry import Credentials, RegistryClient
from layerdiff.registry.blob import BlobReader
from tests.support import images
from tests.support.compat_cases import BASE, entry_names, unlisted_dirs, whiteouts
from tests.support.containerd import Containerd
from tests.support.layers import gzip, layer, zstd
from tests.support.ocilayout import goarch, sha256_digest
from tests.support.registry import FlakyProxy, Registry, TokenServer, require_binary
from tests.support.tree import diff_trees, snapshot_tree

MODES = ["flat", pytest.param("snapshots", marks=pytest.mark.root)]
USER, PASSWORD = "alice", "wonderland"
NAME = "test/app"
RUN_TIMEOUT = 300.0
#: Big enough that a download can be cut well inside it (the client reads 1 MiB at once).
BIG = random.Random(7).randbytes(3 << 20)
DROP_AT = (1 << 20) + 12345

# Every layer kind an unpack meets: gzip, zstd and plain; whiteouts of files and
# directories across layers; an opaque directory; a blob long enough to be cut.
LAYERS = [
    gzip(BASE),
    zstd(layer(("file", "etc/hostname", {"data": b"box"}), ("file", "d/.wh.a"),
               ("file", "big", {"data": BIG}))),
    layer(("dir", "d/"), ("file", "d/.wh..wh..opq"), ("file", "d/new", {"data": b"n"}),
          ("file", "etc/.wh.passwd"), ("dir", "usr/"), ("file", "usr/.wh.bin")),
]
OTHER_ARCH = "arm64" if goarch() != "arm64" else "amd64"
OTHER_LAYERS = [gzip(layer(("dir", "etc/"), ("file", "etc/arch", {"data": OTHER_ARCH.encode()})))]


@dataclass
class Pushed:
    """A registry holding ``NAME:1``: an index of this machine's image and another's
    (and the token server it trusts, if any)."""

    registry: Registry
    host: str
    index: str
    native: images.ImageParts
    other: images.ImageParts
    token_server: TokenServer | None = None

    def ref(self, target: str = ":1", host: str | None = None) -> str:
        """``HOST/NAME`` followed by ``target`` (``:TAG`` or ``@DIGEST``)."""
        return f"{host or self.host}/{NAME}{target}"


def _push_app(client: RegistryClient, *, docker: bool) -> tuple[str, images.ImageParts,
                                                                 images.ImageParts]:
    native = images.make_image(LAYERS, docker=docker)
    other = images.make_image(OTHER_LAYERS, arch=OTHER_ARCH, docker=docker)
    media_type = images.DOCKER_LIST if docker else images.OCI_INDEX
    # The other platform first: resolving must pick, not take the first entry.
    index = images.push_index(client, NAME, "1", [other, native], media_type)
    return index, native, other


@pytest.fixture(scope="module")
def anonymous() -> Iterator[Pushed]:
    require_binary()
    with Registry() as reg:
        client = RegistryClient(reg.host, insecure=True, credentials=None)
        yield Pushed(reg, reg.host, *_push_app(client, docker=False))


@pytest.fixture(scope="module")
def token_server() -> Iterator[TokenServer]:
    with TokenServer({USER: PASSWORD}) as server:
        yield server


@pytest.fixture(scope="module")
def authenticated(token_server: TokenServer) -> Iterator[Pushed]:
    """The same image with docker's media types, behind token auth."""
    require_binary()
    with Registry(token_server) as reg:
        client = RegistryClient(reg.host, insecure=True, credentials=Credentials(USER, PASSWORD))
        yield Pushed(reg, reg.host, *_push_app(client, docker=True), token_server)


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """An empty ``DOCKER_CONFIG`` folder: the machine's own config must not leak in."""
    folder = tmp_path / "docker-config"
    folder.mkdir()
    return folder


def _write_credentials(folder: Path, host: str) -> None:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def layerdiff(docker_config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``layerdiff`` command in a subprocess, with ``DOCKER_CONFIG`` set."""
    env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
    return subprocess.run(
        [sys.executable, "-m", "layerdiff", *args],
        capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False,
    )


def unpack(docker_config: Path, ref: str, dest: Path, mode: str = "flat", *extra: str
           ) -> subprocess.CompletedProcess[str]:
    """``layerdiff unpack registry:REF DEST --insecure-registry --mode MODE``."""
    return layerdiff(docker_config, "unpack", f"registry:{ref}", str(dest),
                     "--insecure-registry", "--mode", mode, *extra)


def _succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def _failed_with_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("layerdiff: error: ")
    return result.stderr


# ------------------------------------------------------------------------ containerd



def assert_same_as_containerd(
    daemon: Containerd,
    ref: str,
    dest: Path,
    mode: str,
    image: images.ImageParts,
    **pull: str,
) -> None:
    """DEST (a flat tree, or snapshots mode's ``1..N``) is what containerd's native
    (flat) or overlayfs (snapshots) snapshotter made of ``ref``, which is ``image``."""
    layers, diff_ids = [lay.blob for lay in image.layers], image.diff_ids
    if mode == "flat":
        theirs = snapshot_tree(daemon.pull(ref, "native", diff_ids, **pull)[-1])
        listed = set().union(*(entry_names(b) for b in layers))
        problems = diff_trees(
            theirs, snapshot_tree(dest), ignore_mtime=unlisted_dirs(theirs, listed),
            ignore_dir_mtimes=len(layers) > 1,
        )
        assert problems == []
        return
    their_dirs = daemon.pull(ref, "overlayfs", diff_ids, **pull)
    assert sorted(os.listdir(dest)) == sorted(
        [str(i + 1) for i in range(len(layers))] + ["layerdiff-unpack.json", "upper", "work"]
    )
    for i, their_dir in enumerate(their_dirs):
        their_tree = snapshot_tree(their_dir)
        unlisted = unlisted_dirs(their_tree, entry_names(layers[i])) + whiteouts(their_tree)
        our_tree = snapshot_tree(dest / str(i + 1))
        assert diff_trees(their_tree, our_tree, ignore_mtime=unlisted) == [], f"layer {i}"


# ------------------------------------------------------------------ the same tree


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.parametrize("mode", MODES)
def test_anonymous(
    containerd: Containerd, anonymous: Pushed, docker_config: Path, tmp_path: Path, mode: str
) -> None:
    images.skip_unless_root(mode)
    result = unpack(docker_config, anonymous.ref(), tmp_path / "out", mode)
    _succeeded(result)
    native = anonymous.native
    assert result.stdout.startswith(f"{native.config_digest} linux/{goarch()} 3 layers ")
    assert_same_as_containerd(containerd, anonymous.ref(), tmp_path / "out", mode, native)


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.parametrize("mode", MODES)
def test_token_auth_with_docker_config(
    containerd: Containerd, authenticated: Pushed, docker_config: Path, tmp_path: Path, mode: str
) -> None:
    images.skip_unless_root(mode)
    denied = unpack(docker_config, authenticated.ref(), tmp_path / "denied", mode)
    assert f"denied repository:{NAME}:pull to anonymous access" in _failed_with_one_line(denied)
    _write_credentials(docker_config, authenticated.host)
    assert authenticated.token_server is not None
    issued = authenticated.token_server.issued
    _succeeded(unpack(docker_config, authenticated.ref(), tmp_path / "out", mode))
    assert authenticated.token_server.issued > issued
    assert_same_as_containerd(
        containerd, authenticated.ref(), tmp_path / "out", mode, authenticated.native,
        user=f"{USER}:{PASSWORD}",
    )


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.parametrize("mode", MODES)
def test_dropped_connection_resumes_with_a_range(
    containerd: Containerd, anonymous: Pushed, docker_config: Path, tmp_path: Path, mode: str
) -> None:
    images.skip_unless_root(mode)
    big = anonymous.native.layers[1]
    assert len(big.blob) > DROP_AT + (1 << 20)
    with FlakyProxy(anonymous.host) as proxy:
        proxy.drop_after(DROP_AT, digest=big.digest)
        _succeeded(unpack(docker_config, anonymous.ref(host=proxy.host), tmp_path / "out", mode))
    assert [r for d, r in proxy.downloads if d == big.digest] == ["", f"bytes={DROP_AT}-"]
    assert_same_as_containerd(containerd, anonymous.ref(), tmp_path / "out", mode,
                              anonymous.native)


@pytest.mark.containerd
@pytest.mark.root
@pytest.mark.parametrize("target", ["index", "manifest"])
def test_by_digest(
    containerd: Containerd, anonymous: Pushed, docker_config: Path, tmp_path: Path, target: str
) -> None:
    digest = anonymous.index if target == "index" else anonymous.native.manifest_digest
    ref = anonymous.ref(f"@{digest}")
    _succeeded(unpack(docker_config, ref, tmp_path / "out"))
    assert_same_as_containerd(containerd, ref, tmp_path / "out", "flat", anonymous.native)


@pytest.mark.containerd
@pytest.mark.root
def test_another_platform_of_the_index(
    containerd: Containerd, anonymous: Pushed, docker_config: Path, tmp_path: Path
) -> None:
    platform = f"linux/{OTHER_ARCH}"
    result = unpack(docker_config, anonymous.ref(), tmp_path / "out", "flat",
                    "--platform", platform)
    _succeeded(result)
    assert result.stdout.startswith(f"{anonymous.other.config_digest} {platform} 1 layers ")
    assert_same_as_containerd(containerd, anonymous.ref(), tmp_path / "out", "flat",
                              anonymous.other, platform=platform)


def test_a_registry_layer_is_hashed_once(anonymous: Pushed) -> None:
    # The download checks digest and size itself: a second hash would cost ~1 s/GiB.
    source = open_image(f"registry:{anonymous.ref()}", insecure_registry=True)
    try:
        image = source.resolve(default_platform(), strict=False)
        for layer in image.layers:
            with layer_blob(source, layer) as reader:
                assert isinstance(reader, BlobReader)
                data = reader.read(-1)
            assert sha256_digest(data) == layer.digest
    finally:
        source.close()


# ------------------------------------------------------------------------- failures


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "damaged",
    [
        # Read whole in one chunk: the registry client's own check fails first.
        "small zstd blob",
        # Its decoding fails long before its end: the unpacker reads the rest to tell a
        # damaged blob from a damaged layer.
        "big gzip blob, damaged early",
    ],
)
def test_tampered_blob_names_layer_and_both_digests(
    anonymous: Pushed, docker_config: Path, tmp_path: Path, mode: str, damaged: str
) -> None:
    images.skip_unless_root(mode)
    tag = f"{mode}-{damaged.split()[1]}"
    # Layers of their own: the registry keeps one copy of a blob for every repository.
    if damaged.startswith("small"):
        top, at = zstd(layer(("file", f"tampered-{tag}", {"data": BIG[:4096]}))), 0.5
    else:
        top, at = gzip(layer(("file", f"tampered-{tag}", {"data": BIG}))), 0.01
    img = images.make_image([gzip(layer(("file", f"base-{tag}", {"data": b"b"}))), top])
    client = RegistryClient(anonymous.host, insecure=True, credentials=None)
    images.push(client, "test/tampered", tag, img)
    bad = img.layers[1]
    flipped = bytearray(bad.blob)
    flipped[int(len(flipped) * at)] ^= 0xFF
    anonymous.registry.blob_path(bad.digest).write_bytes(flipped)
    result = unpack(docker_config, f"{anonymous.host}/test/tampered:{tag}", tmp_path / "out", mode)
    message = _failed_with_one_line(result)
    assert f"layer 1 ({bad.digest})" in message
    assert f"digest is {sha256_digest(bytes(flipped))}, expected {bad.digest}" in message


@pytest.mark.parametrize("mode", MODES)
def test_wrong_diff_id_names_layer_and_both_digests(
    anonymous: Pushed, docker_config: Path, tmp_path: Path, mode: str
) -> None:
    images.skip_unless_root(mode)
    real = images.make_image(LAYERS)
    wrong = "sha256:" + "0" * 64
    img = images.make_image(LAYERS, diff_ids=[real.diff_ids[0], wrong, real.diff_ids[2]])
    client = RegistryClient(anonymous.host, insecure=True, credentials=None)
    images.push(client, "test/wrong-diffid", "1", img)
    result = unpack(docker_config, f"{anonymous.host}/test/wrong-diffid:1", tmp_path / "out", mode)
    message = _failed_with_one_line(result)
    assert (
        f"layer 1 ({img.layers[1].digest}): its diffID is {real.diff_ids[1]}, "
        f"the image config expects {wrong}"
    ) in message


def test_platform_the_index_lacks_names_the_available_ones(
    anonymous: Pushed, docker_config: Path, tmp_path: Path
) -> None:
    result = unpack(docker_config, anonymous.ref(), tmp_path / "out", "flat",
                    "--platform", "linux/s390x")
    message = _failed_with_one_line(result)
    available = ", ".join(sorted([f"linux/{goarch()}", f"linux/{OTHER_ARCH}"]))
    assert f"no image for platform linux/s390x in index {anonymous.index}" in message
    assert f"(available: {available})" in message


def test_index_without_this_machines_platform(
    anonymous: Pushed, docker_config: Path, tmp_path: Path
) -> None:
    client = RegistryClient(anonymous.host, insecure=True, credentials=None)
    index = images.push_index(client, NAME, "foreign", [anonymous.other])
    message = _failed_with_one_line(unpack(docker_config, anonymous.ref(":foreign"),
                                           tmp_path / "out"))
    assert f"no image for platform linux/{goarch()}" in message
    assert f"in index {index} (available: linux/{OTHER_ARCH})" in message
