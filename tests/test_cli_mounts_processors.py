"""``layerdiff apply`` and ``diff`` with mounts, media types, processors and payloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from layerdiff.mount import format_mount_spec, mounts_to_json
from layerdiff.mount.mount import Mount
from tests.support.decrypt_processor import encrypt, payload_for
from tests.support.layers import gzip, layer
from tests.support.tree import diff_trees, merged_view, snapshot_tree

PROGRAM = Path(__file__).parent / "support" / "decrypt_processor.py"
ENCRYPTED = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
LAYER = gzip(layer(
    ("dir", "etc/"),
    ("file", "etc/motd", {"data": b"hello\n"}),
    ("file", "gone/.wh..wh..opq"),
))
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "layerdiff", *args], capture_output=True,
                          text=True, check=False)


def test_encrypted_layer_through_a_configured_processor(tmp_path: Path) -> None:
    key = b"k" * 32
    (tmp_path / "layer.enc").write_bytes(encrypt(LAYER, key))
    (tmp_path / "key.any").write_bytes(payload_for(key))
    (tmp_path / "processors.toml").write_text(
        f"[stream_processors.decrypt]\naccepts = [\"{ENCRYPTED}\"]\n"
        f"returns = \"application/vnd.oci.image.layer.v1.tar+gzip\"\n"
        f"path = {json.dumps(sys.executable)}\nargs = [{json.dumps(str(PROGRAM))}]\n"
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    result = run("apply", "--json", "--config", str(tmp_path / "processors.toml"),
                 "--payload", f"decrypt={tmp_path / 'key.any'}", "--media-type", ENCRYPTED,
                 str(tmp_path / "layer.enc"), str(dest))
    assert result.returncode == 0, result.stderr
    assert (dest / "etc/motd").read_bytes() == b"hello\n"
    without_key = run("apply", "--config", str(tmp_path / "processors.toml"),
                      "--media-type", ENCRYPTED, str(tmp_path / "layer.enc"), str(dest))
    assert without_key.returncode == 1
    assert "stream processor 'decrypt'" in without_key.stderr
    assert without_key.stderr.count("\n") == 1


def test_unknown_media_type_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "l").write_bytes(LAYER)
    result = run("apply", "--media-type", "application/x-nope", str(tmp_path / "l"),
                 str(tmp_path))
    assert result.returncode == 1
    assert "application/x-nope" in result.stderr


@pytest.mark.parametrize("args", [[], ["DEST", "--mount", "type=tmpfs,source=t"]])
def test_apply_needs_exactly_one_target(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "l").write_bytes(LAYER)
    argv = [str(tmp_path) if a == "DEST" else a for a in args]
    result = run("apply", str(tmp_path / "l"), *argv)
    assert result.returncode == 1
    assert "give either DEST or --mount" in result.stderr


@root_only
def test_apply_onto_an_overlay_mount_spec_writes_the_upperdir(tmp_path: Path) -> None:
    lower, upper, work = (tmp_path / n for n in ("lower", "upper", "work"))
    for d in (lower, upper, work):
        d.mkdir()
    (lower / "gone").mkdir()
    (lower / "gone/old").write_text("old")
    (tmp_path / "l").write_bytes(LAYER)
    spec = format_mount_spec(Mount("overlay", "overlay", "", (
        f"lowerdir={lower}", f"upperdir={upper}", f"workdir={work}")))
    result = run("apply", "--mount", spec, str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr
    assert os.getxattr(upper / "gone", "trusted.overlay.opaque") == b"y"
    naive = tmp_path / "naive"
    naive.mkdir()
    (naive / "gone").mkdir()
    (naive / "gone/old").write_text("old")
    assert run("apply", str(tmp_path / "l"), str(naive)).returncode == 0
    with merged_view([lower, upper]) as merged:
        assert diff_trees(snapshot_tree(naive), snapshot_tree(merged), ignore_atime=True,
                          ignore_dir_mtimes=True) == []


@root_only
def test_diff_of_mounts_matches_the_diff_of_directories(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    (tmp_path / "l").write_bytes(LAYER)
    subprocess.run(["cp", "-a", str(lower), str(upper)], check=True)
    assert run("apply", str(tmp_path / "l"), str(upper)).returncode == 0
    as_dirs = run("diff", "--json", "--compression", "none", str(lower), str(upper),
                  "-o", str(tmp_path / "dirs.tar"))
    lower_json = mounts_to_json([Mount("bind", str(lower), "", ("rbind", "ro"))])
    (tmp_path / "upper.json").write_text(
        mounts_to_json([Mount("bind", str(upper), "", ("rbind", "ro"))]))
    as_mounts = run("diff", "--json", "--compression", "none", "--lower-mounts-json",
                    lower_json, "--upper-mounts-json", f"@{tmp_path / 'upper.json'}",
                    "-o", str(tmp_path / "mounts.tar"))
    assert as_mounts.returncode == 0, as_mounts.stderr
    assert json.loads(as_mounts.stdout)["digest"] == json.loads(as_dirs.stdout)["digest"]
    both = run("diff", "--upper-mount", f"type=bind,source={upper},options=rbind",
               str(lower), str(upper), "-o", str(tmp_path / "x"))
    assert (both.returncode, both.stderr.strip()) == (
        1, "layerdiff: error: give LOWER UPPER or --upper-mount, not both")
