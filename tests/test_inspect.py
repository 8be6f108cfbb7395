"""``layerdiff inspect``: what a layer does, and what an image's layers do to each other."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from layerdiff.cli.inspect_cmd import _tree
from layerdiff.cli.output import print_table
from layerdiff.errors import CorruptLayerError, InvalidLayerError
from layerdiff.image import open_image
from layerdiff.inspect import Flattener, inspect_image, inspect_layer
from tests.support import images
from tests.support.cli import Run
from tests.support.layers import gzip, layer, zstd

#: A base layer: usrmerge, a file in /etc, a cache directory.
BASE = gzip(layer(
    ("dir", "etc/"),
    ("file", "etc/motd", {"data": b"hello"}),
    ("file", "etc/passwd", {"data": b"p" * 300}),
    ("dir", "usr/bin/"),
    ("file", "usr/bin/tool", {"data": b"t" * 1000}),
    ("symlink", "bin", {"linkname": "usr/bin"}),
    ("dir", "var/cache/"),
    ("file", "var/cache/a", {"data": b"a" * 50}),
    ("file", "var/cache/sub/b", {"data": b"b" * 20}),
))
#: On top: overwrites the tool through the symlink, deletes motd, makes the cache opaque
#: (keeping what it writes there itself, before the marker), adds a file.
TOP = layer(
    ("file", "bin/tool", {"data": b"T" * 10}),
    ("file", "etc/.wh.motd"),
    ("dir", "var/cache/"),
    ("file", "var/cache/mine", {"data": b"m" * 7}),
    ("file", "var/cache/.wh..wh..opq"),
    ("file", "srv/new", {"data": b"n" * 4}),
)

LAYER_KEYS = {
    "index", "source", "media_type", "digest", "blob_size", "diff_id", "size", "entries",
    "changes", "kinds", "file_bytes", "removed_bytes", "wasted_bytes", "deleted", "opaque",
    "largest", "directories",
}


def test_a_layer_alone(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "top.tar.zst"
    path.write_bytes(zstd(TOP))
    code, out, err = run("inspect", "--json", str(path))
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert set(report) == LAYER_KEYS | {"schema", "kind"}
    assert (report["schema"], report["kind"], report["index"]) == (1, "layer", None)
    assert report["digest"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["diff_id"] == "sha256:" + hashlib.sha256(TOP).hexdigest()
    assert (report["blob_size"], report["size"]) == (path.stat().st_size, len(TOP))
    # Alone, nothing tells added from modified.
    assert report["changes"] == {
        "added": 0, "modified": 0, "changed": 4, "deleted": 1, "opaque": 1,
    }
    assert report["kinds"] == {"dir": 1, "file": 3, "opaque": 1, "whiteout": 1}
    assert report["file_bytes"] == 21
    assert report["deleted"] == [{"path": "/etc/motd", "bytes": None}]
    assert report["opaque"] == [{"path": "/var/cache", "bytes": None}]
    assert report["largest"] == [
        {"path": "/bin/tool", "size": 10},
        {"path": "/var/cache/mine", "size": 7},
        {"path": "/srv/new", "size": 4},
    ]
    assert report["directories"][:2] == [
        {"path": "/", "bytes": 21, "files": 3},
        {"path": "/bin", "bytes": 10, "files": 1},
    ]
    assert (report["removed_bytes"], report["wasted_bytes"]) == (None, None)


def test_top_bounds_the_lists(tmp_path: Path) -> None:
    blob = layer(*(("file", f"d{i}/f", {"data": b"x" * i}) for i in range(1, 30)))
    report = inspect_layer(io.BytesIO(blob))
    data = report.to_json(top=3)
    assert [f["size"] for f in data["largest"]] == [29, 28, 27]
    assert [d["path"] for d in data["directories"]] == ["/", "/d29", "/d28"]
    assert len(report.to_json(top=0)["largest"]) == 29


def test_an_image_per_layer_and_flattened(run: Run, tmp_path: Path) -> None:
    forms = images.all_forms(images.make_image([BASE, TOP]), tmp_path)
    code, out, err = run("inspect", "--json", forms["oci-layout"])
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert (report["schema"], report["kind"]) == (1, "image")
    base, top = report["layers"]
    assert set(base) == LAYER_KEYS
    assert base["changes"]["added"] == 9 and base["changes"]["modified"] == 0
    # bin/tool replaces usr/bin/tool (through the symlink); var/cache is there already.
    assert top["changes"] == {
        "added": 2, "modified": 2, "changed": 0, "deleted": 1, "opaque": 1,
    }
    assert top["deleted"] == [{"path": "/etc/motd", "bytes": 5}]
    assert top["opaque"] == [{"path": "/var/cache", "bytes": 70}]
    assert top["removed_bytes"] == 1000 + 5 + 70
    assert (base["wasted_bytes"], top["wasted_bytes"]) == (1075, 0)
    flat = report["flattened"]
    assert flat["layer_bytes"] == 1375 + 21
    assert flat["wasted_bytes"] == 1075
    assert flat["file_bytes"] == flat["layer_bytes"] - flat["wasted_bytes"]
    assert {f["path"]: f["size"] for f in flat["largest"]} == {
        "/etc/passwd": 300, "/usr/bin/tool": 10, "/var/cache/mine": 7, "/srv/new": 4,
    }
    assert flat["wasted"] == [
        {"path": "/usr/bin/tool", "size": 1000, "layer": 0, "by": 1, "how": "overwritten"},
        {"path": "/var/cache/a", "size": 50, "layer": 0, "by": 1, "how": "hidden"},
        {"path": "/var/cache/sub/b", "size": 20, "layer": 0, "by": 1, "how": "hidden"},
        {"path": "/etc/motd", "size": 5, "layer": 0, "by": 1, "how": "deleted"},
    ]


def test_every_image_form_gives_the_same_report(tmp_path: Path) -> None:
    forms = images.all_forms(images.make_image([BASE, TOP]), tmp_path)
    results = []
    for text in forms.values():
        source = open_image(text)
        try:
            results.append(inspect_image(source).to_json(0)["flattened"])
        finally:
            source.close()
    assert all(r == results[0] for r in results)


def test_a_file_replaced_twice_in_one_layer_is_wasted_once() -> None:
    flat = Flattener()
    flat.put(0, ("a",), "file", 10)
    assert flat.put(0, ("a",), "file", 3) == (False, 10)
    assert flat.put(1, ("a",), "dir", 0) == (True, 3)
    assert flat.wasted == {0: 13}
    assert list(flat.files()) == []


def test_symlink_loops_are_refused() -> None:
    flat = Flattener()
    flat.put(0, ("a",), "symlink", 0, "b")
    flat.put(0, ("b",), "symlink", 0, "a")
    with pytest.raises(InvalidLayerError, match="too many levels of symbolic links"):
        flat.put(0, ("a", "x"), "file", 1)


def test_symlinks_never_lead_above_the_root() -> None:
    flat = Flattener()
    flat.put(0, ("up",), "symlink", 0, "../../..")
    flat.put(0, ("up", "f"), "file", 5)
    assert list(flat.files()) == [("/f", 5)]


def test_human_output_lists_largest_and_directories(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "base.tar.gz"
    path.write_bytes(BASE)
    code, out, _ = run("inspect", "--top", "2", str(path))
    assert code == 0
    assert "entries   9: 9 changed" in out
    assert "LARGEST FILES\nSIZE    PATH\n1000 B  /usr/bin/tool\n300 B   /etc/passwd\n" in out
    assert "DIRECTORIES\nBYTES    FILES  PATH\n1.3 KiB  5      /\n1000 B   1      /usr/bin\n" in out


def test_human_output_of_an_image_names_the_waste(run: Run, tmp_path: Path) -> None:
    forms = images.all_forms(images.make_image([BASE, TOP]), tmp_path)
    code, out, _ = run("inspect", forms["docker-save"])
    assert code == 0
    assert "1.0 KiB (77%) wasted" in out
    assert "1000 B  0      1   overwritten  /usr/bin/tool" in out


def test_tree(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "top.tar"
    path.write_bytes(TOP)
    code, out, _ = run("inspect", "--tree", str(path))
    assert code == 0
    tree = out[out.index("\n/  ") + 1 :]
    assert tree.splitlines() == [
        "/  21 B",
        "├── bin/  10 B",
        "│   └── tool  10 B",
        "├── etc/",
        "│   └── motd  deleted",
        "├── srv/  4 B",
        "│   └── new  4 B",
        "└── var/  7 B",
        "    └── cache/  7 B  opaque",
        "        └── mine  7 B",
    ]


def test_tree_escapes_control_characters() -> None:
    report = inspect_layer(io.BytesIO(layer(("file", "a\nb\x1b[2J", {"data": b"x"}))))
    assert list(_tree(report.entries))[1] == "└── a\\x0ab\\x1b[2J  1 B"


def test_tables_fit_the_width(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["SIZE", "PATH"], [["1 B", "/a/very/long/path/name"]], width=16)
    assert capsys.readouterr().out == "SIZE  PATH\n1 B   /a/very/l…\n"


def test_a_plain_tar_layer_is_not_taken_for_an_image(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "layer.tar"
    path.write_bytes(layer(("file", "manifest.json.txt", {"data": b"{}"})))
    code, out, _ = run("inspect", "--json", str(path))
    assert code == 0 and json.loads(out)["kind"] == "layer"


def test_standard_input(run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(BASE)))
    code, out, _ = run("inspect", "--json", "-")
    assert code == 0
    assert json.loads(out)["source"] == "-"


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (gzip(layer(("file", "f", {"data": b"x" * 5000})))[:-20], "corrupt gzip stream"),
        (b"this is not a tar archive at all" * 20, "invalid tar header"),
        (layer(("file", ".wh..")), "invalid whiteout name"),
    ],
)
def test_a_bad_layer_is_a_one_line_error(
    run: Run, tmp_path: Path, blob: bytes, message: str
) -> None:
    path = tmp_path / "bad"
    path.write_bytes(blob)
    code, out, err = run("inspect", str(path))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("layerdiff: error: ") and message in err


def test_a_corrupt_image_blob_names_its_layer_and_digests(run: Run, tmp_path: Path) -> None:
    image = images.make_image([BASE, TOP])
    files = images.layout_files([image])
    name = "blobs/sha256/" + image.layers[1].digest.removeprefix("sha256:")
    files[name] = files[name][:600] + b"\xff" * 100 + files[name][700:]
    layout = images.write_dir(files, tmp_path / "layout")
    code, out, err = run("inspect", str(layout))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert f"layer 1 ({image.layers[1].digest}): blob has digest sha256:" in err


def test_a_wrong_diff_id_is_refused(tmp_path: Path) -> None:
    image = images.make_image([BASE], diff_ids=["sha256:" + "0" * 64])
    source = open_image(images.all_forms(image, tmp_path)["oci-archive"])
    try:
        with pytest.raises(CorruptLayerError, match="the image config expects sha256:000"):
            inspect_image(source)
    finally:
        source.close()


def test_no_progress_when_standard_error_is_not_a_terminal(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "base.tar.gz"
    path.write_bytes(BASE)
    code, _, err = run("inspect", str(path))
    assert (code, err) == (0, "")
