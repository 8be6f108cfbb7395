"""Third parties' plugins in ``layerdiff serve``, the config errors it reports, and the
config, containerd snippet and systemd unit that docs/serve.md shows.

A package installed on the server's path (a ``*.dist-info`` with ``entry_points.txt``, as
pip would leave it) brings a differ and a stream processor through the
``layerdiff.plugins`` entry-point group. The differ is placed first in the diff service's
order: it takes one media type and answers "not handled" for the others, which go on to
``walking``; ``walking`` uses the third party's stream processor.
"""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from layerdiff import apply_layer
from layerdiff.api import descriptor_pb2, diff_pb2
from layerdiff.config import parse_config
from layerdiff.content import LocalStore
from layerdiff.oci import MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_GZIP
from tests.support.layers import gzip, layer
from tests.support.serve import LayerdiffServer, bind, put
from tests.support.tree import diff_trees, snapshot_tree

#: What the third party's differ applies itself.
THEIRS = "application/vnd.thirdparty.layer"
#: What the third party's stream processor turns into plain tar (bytes XORed with a key).
XORED = "application/vnd.thirdparty.layer.v1.tar+xor"
KEY = 0x5A

PLUGIN_MODULE = '''
"""A third party's layerdiff plugins: a differ and a stream processor."""

import json

from layerdiff.errors import NotHandledError
from layerdiff.oci import Descriptor
from layerdiff.plugins import Registration

THEIRS = "application/vnd.thirdparty.layer"
XORED = "application/vnd.thirdparty.layer.v1.tar+xor"
TAR = "application/vnd.oci.image.layer.v1.tar"


class Differ:
    """Applies THEIRS by copying the blob into the first mount's source as "blob"."""

    def __init__(self, journal):
        self.journal = journal

    def _note(self, **entry):
        with open(self.journal, "a") as f:
            f.write(json.dumps(entry) + "\\n")

    def apply(self, request):
        if request.desc.media_type != THEIRS:
            self._note(method="apply", media_type=request.desc.media_type, handled=False)
            raise NotHandledError(f"thirdparty: not {request.desc.media_type}")
        self._note(method="apply", media_type=THEIRS, handled=True)
        with request.store.reader(request.desc.digest) as blob:
            data = blob.read()
        with open(request.mounts[0].source + "/blob", "wb") as out:
            out.write(data)
        return Descriptor(TAR, request.desc.digest, request.desc.size)

    def compare(self, request):
        self._note(method="compare", media_type=request.media_type, handled=False)
        raise NotHandledError("thirdparty does not compare")


class XorStage:
    media_type = TAR

    def __init__(self, stream, key):
        self._stream, self._key = stream, key

    def __iter__(self):
        while chunk := self._stream.read(65536):
            yield bytes(b ^ self._key for b in chunk)

    def close(self):
        pass


def xor_handler(key):
    def handler(media_type):
        if media_type != XORED:
            return None
        return lambda stream, payloads: XorStage(stream, key)
    return handler


PLUGINS = [
    Registration("layerdiff.differ", "thirdparty", lambda ctx: Differ(ctx.config["journal"])),
    Registration("layerdiff.stream-processor", "xor",
                 lambda ctx: xor_handler(ctx.config["key"])),
]
'''


def install_plugins(site: Path) -> None:
    """Install the plugin package in ``site`` as pip would: module and dist-info."""
    site.mkdir()
    (site / "thirdparty_layerdiff.py").write_text(PLUGIN_MODULE)
    dist = site / "thirdparty_layerdiff-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: thirdparty-layerdiff\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[layerdiff.plugins]\nthirdparty = thirdparty_layerdiff:PLUGINS\n"
    )


@dataclass
class Served:
    server: LayerdiffServer
    store: LocalStore
    journal: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if os.geteuid() != 0:
        pytest.skip("layerdiff serve mounts: needs root")
    work = tmp_path_factory.mktemp("plugins")
    install_plugins(work / "site")
    journal, store = work / "journal", work / "store"
    config = f"""
[content]
source = "local"
root = "{store}"

[mounts]
temp_root = "{work / 'mounts'}"

[plugins."layerdiff.service.diff"]
default = ["thirdparty", "walking"]

[plugins."layerdiff.differ.thirdparty"]
journal = "{journal}"

[plugins."layerdiff.stream-processor.xor"]
key = {KEY}
"""
    server = LayerdiffServer(work, config=config, env={"PYTHONPATH": str(work / "site")})
    with server, LocalStore(store) as local:
        yield Served(server, local, journal)
        assert server.stop() == 0


def journal(s: Served) -> list[dict[str, object]]:
    if not s.journal.exists():
        return []
    return [json.loads(line) for line in s.journal.read_text().splitlines()]


TAR = layer(("dir", "etc/"), ("file", "etc/motd", {"data": b"hello\n"}),
            ("symlink", "motd", {"linkname": "etc/motd"}))


def apply(s: Served, desc: descriptor_pb2.Descriptor, target: Path) -> diff_pb2.ApplyResponse:
    with s.server.diff() as client:
        reply: diff_pb2.ApplyResponse = client.Apply(
            diff_pb2.ApplyRequest(diff=desc, mounts=[bind(target, "rw")]), timeout=60
        )
    return reply


def expected_tree(tmp_path: Path) -> Path:
    naive = tmp_path / "naive"
    naive.mkdir()
    apply_layer(io.BytesIO(TAR), naive)
    return naive


@pytest.mark.root
def test_what_the_third_party_refuses_goes_on_to_walking(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    before = len(journal(served))
    reply = apply(served, put(served.store, gzip(TAR), MEDIA_TYPE_LAYER_GZIP), target)
    assert reply.applied.digest == "sha256:" + hashlib.sha256(TAR).hexdigest()
    # Asked first, it passed; walking applied the layer.
    assert journal(served)[before:] == [
        {"method": "apply", "media_type": MEDIA_TYPE_LAYER_GZIP, "handled": False}]
    assert diff_trees(snapshot_tree(expected_tree(tmp_path)), snapshot_tree(target),
                      ignore_atime=True, ignore_dir_mtimes=True) == []


@pytest.mark.root
def test_the_third_party_applies_what_it_takes(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    blob = b"their own layer format"
    desc = put(served.store, blob, THEIRS)
    before = len(journal(served))
    reply = apply(served, desc, target)
    assert (reply.applied.media_type, reply.applied.digest) == (MEDIA_TYPE_LAYER, desc.digest)
    assert journal(served)[before:] == [{"method": "apply", "media_type": THEIRS,
                                         "handled": True}]
    assert os.listdir(target) == ["blob"] and (target / "blob").read_bytes() == blob


@pytest.mark.root
def test_walking_uses_the_third_partys_stream_processor(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    xored = bytes(b ^ KEY for b in TAR)
    reply = apply(served, put(served.store, xored, XORED), target)
    assert reply.applied.digest == "sha256:" + hashlib.sha256(TAR).hexdigest()
    assert diff_trees(snapshot_tree(expected_tree(tmp_path)), snapshot_tree(target),
                      ignore_atime=True, ignore_dir_mtimes=True) == []


@pytest.mark.root
def test_a_diff_the_third_party_refuses_is_computed_by_walking(
    served: Served, tmp_path: Path
) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    (upper / "new").write_bytes(b"new")
    before = len(journal(served))
    with served.server.diff() as client:
        desc = client.Diff(diff_pb2.DiffRequest(
            left=[bind(lower, "ro")], right=[bind(upper, "ro")], media_type=MEDIA_TYPE_LAYER,
        ), timeout=60).diff
    assert journal(served)[before:] == [
        {"method": "compare", "media_type": MEDIA_TYPE_LAYER, "handled": False}]
    with served.store.reader(desc.digest) as blob:
        apply_layer(io.BytesIO(blob.read()), lower)
    assert (lower / "new").read_bytes() == b"new"


@pytest.mark.root
def test_what_no_differ_takes_is_unimplemented(served: Served, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    desc = put(served.store, b"?", "application/x-nobody")
    with pytest.raises(grpc.RpcError) as caught:
        apply(served, desc, target)
    assert isinstance(caught.value, grpc.Call)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert os.listdir(target) == []


# ----------------------------------------------------------------------- config errors


@pytest.mark.parametrize(("config", "message"), [
    ('[plugins."layerdiff.service.diff"]\ndefault = ["nope", "walking"]\n',
     "plugin layerdiff.service.diff failed to initialise: "
     "plugin layerdiff.differ.nope is not loaded"),
    ('[plugins."layerdiff.service.diff"]\ndefault = "walking"\n',
     'default: must be a list of differ names'),
    ('disabled_plugins = ["layerdiff.differ.walking"]\n',
     "plugin layerdiff.differ.walking is not loaded"),
    ('disabled_plugins = ["layerdiff.differ.nope"]\n',
     "config names unknown plugins: layerdiff.differ.nope"),
    ('[plugins."layerdiff.differ.nope"]\nx = 1\n',
     "config names unknown plugins: layerdiff.differ.nope"),
    ("[limits]\nconcurrency = 0\n", "[limits] concurrency: must be a positive integer"),
    ("[limits]\napply_timeout = -1\n",
     "[limits] apply_timeout: must be a positive number of seconds"),
    ("[limits]\ntimout = 5\n", "[limits] timout: unknown key"),
    ("[limits]\nmax_entries = -1\n", "[limits] max_entries: must be a whole number >= 0"),
], ids=["unknown differ", "order not a list", "disabled differ in order", "unknown disabled",
        "unknown section", "concurrency", "timeout", "typo", "entries"])
def test_config_errors_are_one_line_and_stop_the_server(
    tmp_path: Path, config: str, message: str
) -> None:
    path = tmp_path / "layerdiff.toml"
    path.write_text(f'{config}\n[content]\nroot = "{tmp_path / "store"}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "layerdiff", "serve", "--config", str(path),
         "--address", f"unix://{tmp_path / 'layerdiff.sock'}"],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode in (1, 2)
    last = result.stderr.splitlines()[-1]
    assert last.startswith("layerdiff: error: ") and message in last, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "layerdiff.sock").exists()


# ------------------------------------------------------------ the documented config

REPO = Path(__file__).resolve().parent.parent
SERVE_DOC = (REPO / "docs" / "serve.md").read_text()


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", SERVE_DOC, re.S | re.M)


def test_the_documented_configs_parse() -> None:
    blocks = doc_blocks("toml")
    assert len(blocks) >= 4
    documents = [tomllib.loads(block) for block in blocks]  # every block is valid TOML
    [example] = [b for b in blocks if b.startswith("# /etc/layerdiff/config.toml\n")]
    config = parse_config(tomllib.loads(example))
    assert config.content.source == "containerd" and config.limits.apply_timeout == 600
    assert list(config.stream_processors) == ["io.containerd.ocicrypt.decoder.v1.tar.gzip"]
    assert config.plugins == {"layerdiff.service.diff": {"default": ["walking"]}}
    # containerd's side points at the socket the example serves on.
    [containerd] = [d for d in documents if "proxy_plugins" in d]
    assert containerd["proxy_plugins"]["layerdiff"]["type"] == "diff"
    assert f"unix://{containerd['proxy_plugins']['layerdiff']['address']}" == (
        config.server.address)
    diff_service = containerd["plugins"]["io.containerd.service.v1.diff-service"]
    assert diff_service["default"] == ["layerdiff", "walking"]
    # The plugin example's config is layerdiff's.
    [plugin] = [b for b in blocks if "layerdiff.differ.squash" in b]
    assert parse_config(tomllib.loads(plugin)).plugins["layerdiff.service.diff"] == {
        "default": ["squash", "walking"]}


def test_the_documented_unit_is_contribs_and_outlasts_the_grace() -> None:
    [unit] = doc_blocks("ini")
    assert (REPO / "contrib" / "layerdiff.service").read_text() == unit
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(unit)
    service = parser["Service"]
    assert service["Type"] == "simple" and service["KillSignal"] == "SIGTERM"
    assert parser["Unit"]["Before"] == "containerd.service"
    command = shlex.split(service["ExecStart"])
    assert command[1:3] == ["serve", "--config"]
    grace = float(command[command.index("--grace") + 1])
    assert float(service["TimeoutStopSec"]) > grace
