"""Mount options, specs and JSON, parsed without touching the kernel."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from layerdiff.differ.apply import aufs_branches
from layerdiff.differ.compare import lower_view, overlay_fast_path
from layerdiff.errors import InvalidArgumentError
from layerdiff.mount import (
    Mount,
    format_mount_spec,
    mount_from_json,
    mounts_to_json,
    parse_mount_spec,
    parse_mounts_json,
    parse_options,
    readonly_mounts,
)
from layerdiff.mount import options as o
from layerdiff.mount.overlay import lowerdirs, readonly_options, split_layers, upperdir

# ------------------------------------------------------------------------------ options


def test_flags_set_and_clear_in_order() -> None:
    assert parse_options(["ro", "nosuid", "nodev"]).flags == o.MS_RDONLY | o.MS_NOSUID | o.MS_NODEV
    assert parse_options(["ro", "rw"]).flags == 0
    assert parse_options(["rw", "ro"]).readonly
    assert parse_options(["noexec", "exec", "relatime"]).flags == o.MS_RELATIME
    assert parse_options(["rbind"]).flags == o.MS_BIND | o.MS_REC
    assert parse_options(["defaults"]).flags == 0


def test_data_keeps_order_and_unknown_options() -> None:
    parsed = parse_options(["lowerdir=/a:/b", "ro", "upperdir=/u", "index=off", "workdir=/w"])
    assert parsed.data == ("lowerdir=/a:/b", "upperdir=/u", "index=off", "workdir=/w")
    assert parsed.flags == o.MS_RDONLY


def test_propagation_is_apart_from_the_flags() -> None:
    parsed = parse_options(["rbind", "rprivate", "ro"])
    assert parsed.propagation == o.MS_PRIVATE | o.MS_REC
    assert parsed.flags == o.MS_BIND | o.MS_REC | o.MS_RDONLY
    assert parse_options(["shared"]).propagation == o.MS_SHARED
    assert parse_options(["remount", "ro"]).flags == o.MS_REMOUNT | o.MS_RDONLY


def test_loop_and_direct_io() -> None:
    parsed = parse_options(["loop", "ro", "direct-io"])
    assert (parsed.loop, parsed.direct_io, parsed.data) == (True, True, ())
    # Without a loop device, direct-io is the file system's own option, in place.
    parsed = parse_options(["a", "direct-io", "b"])
    assert (parsed.loop, parsed.direct_io, parsed.data) == (False, False, ("a", "direct-io", "b"))


@pytest.mark.parametrize("bad", [["a\0b"], ["\udc80\ud800"], [1], "ro", b"ro"])
def test_bad_options_raise_invalid_argument(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_options(bad)  # type: ignore[arg-type]


@given(st.lists(st.text()))
def test_parse_options_is_total(options: list[str]) -> None:
    try:
        parsed = parse_options(options)
    except InvalidArgumentError:
        return
    assert set(parsed.data) <= set(options)


# ------------------------------------------------------------------------------ overlay


def test_overlay_layers() -> None:
    options = ["lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w"]
    assert lowerdirs(options) == ["/l2", "/l1"]
    assert upperdir(options) == "/u"
    assert upperdir(["lowerdir=/a"]) is None
    assert lowerdirs(["lowerdir+=/a", "lowerdir+=/b"]) == ["/a", "/b"]
    # Data-only layers after "::" are no part of the merged view.
    assert lowerdirs(["lowerdir=/a:/b::/data"]) == ["/a", "/b"]
    assert split_layers(r"/a\:b:/c\\d") == ["/a:b", "/c\\d"]


def test_readonly_overlay_makes_the_upperdir_a_lowerdir() -> None:
    options = ("lowerdir=/l2:/l1", "upperdir=/u:x", "workdir=/w", "index=off")
    assert readonly_options(options) == (r"lowerdir=/u\:x:/l2:/l1", "index=off")
    readonly = Mount("overlay", "overlay", options=readonly_options(options))
    assert readonly.readonly
    assert lowerdirs(readonly.options) == ["/u:x", "/l2", "/l1"]


def test_readonly_mounts() -> None:
    bind = Mount("bind", "/src", options=("rbind", "rw"))
    [ro] = readonly_mounts([bind])
    assert ro.options == ("rbind", "ro") and ro.readonly and not bind.readonly
    assert Mount("overlay", "o", options=("lowerdir=/a", "upperdir=/u", "workdir=/w")).readonly \
        is False
    assert Mount("overlay", "o", options=("lowerdir=/a", "upperdir=/u", "ro")).readonly


def test_aufs_branches() -> None:
    assert aufs_branches(["br:/u=rw:/l1=ro+wh:/l2=ro+wh"]) == ("/u", ["/l1", "/l2"])
    assert aufs_branches(["br:/l1=ro+wh:/u=rw"]) is None  # rw branch must be first
    assert aufs_branches(["br:/u=rw:/v=rw"]) is None
    assert aufs_branches(["dio"]) is None


def test_fast_path_needs_the_lower_view_to_be_the_lowerdirs() -> None:
    upper = [Mount("overlay", "overlay",
                   options=("lowerdir=/s/2:/s/1", "upperdir=/s/3", "workdir=/w"))]
    lower_overlay = [Mount("overlay", "overlay", options=("lowerdir=/s/2:/s/1",))]
    assert overlay_fast_path(lower_overlay, upper) == ("/s/3", ["/s/2", "/s/1"], False)
    assert overlay_fast_path([Mount("overlay", "overlay", options=("lowerdir=/s/1",))],
                             upper) is None
    single = [Mount("overlay", "overlay",
                    options=("lowerdir=/s/1", "upperdir=/s/3", "workdir=/w", "userxattr"))]
    bind = [Mount("bind", "/s/1/", options=("rbind", "ro"))]
    assert overlay_fast_path(bind, single) == ("/s/3", ["/s/1"], True)
    assert overlay_fast_path([], single) is None
    assert overlay_fast_path(bind, [Mount("bind", "/s/3", options=("rbind",))]) is None
    metacopy = [Mount("overlay", "overlay", options=(*upper[0].options, "metacopy=on"))]
    assert overlay_fast_path(lower_overlay, metacopy) is None
    assert lower_view([Mount("tmpfs", "tmpfs")]) is None


# --------------------------------------------------------------------------------- spec


def test_typed_spec() -> None:
    m = parse_mount_spec("type=overlay,source=overlay,options=lowerdir=/l2:/l1,upperdir=/u,"
                         "workdir=/w")
    assert m == Mount("overlay", "overlay", "", ("lowerdir=/l2:/l1", "upperdir=/u", "workdir=/w"))
    assert parse_mount_spec("source=/x,type=bind,target=sub") == Mount("bind", "/x", "sub")
    assert parse_mount_spec(r"type=tmpfs,source=a\,b,options=x\,y,z\\").options == ("x,y", "z\\")
    # overlay's own escapes pass through as typed
    assert parse_mount_spec(r"type=overlay,options=lowerdir=/a\:b").options == (r"lowerdir=/a\:b",)


@pytest.mark.parametrize("text", [
    "", "source=/x", "type=bind,type=bind", "type=bind,size=1", "type=bind,bogus",
    "type=bind,source=\0",
])
def test_bad_typed_specs(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_mount_spec(text)


_names = st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]))


@given(st.builds(Mount, _names.filter(bool), _names, _names, st.lists(_names).map(tuple)))
def test_typed_spec_round_trips(m: Mount) -> None:
    assert parse_mount_spec(format_mount_spec(m)) == m


def test_json_forms() -> None:
    one = {"type": "bind", "source": "/x", "options": ["rbind", "ro"]}
    assert parse_mounts_json(json.dumps(one)) == [Mount("bind", "/x", "", ("rbind", "ro"))]
    both = [one, {"type": "tmpfs", "source": "tmpfs", "target": "t", "options": None}]
    mounts = parse_mounts_json(json.dumps(both))
    assert mounts[1] == Mount("tmpfs", "tmpfs", "t")
    assert parse_mounts_json(mounts_to_json(mounts)) == mounts


@pytest.mark.parametrize("text", [
    "{", "3", "[1]", '{"source": "/x"}', '{"type": 1}', '{"type": "bind", "options": "ro"}',
    '{"type": "bind", "options": [1]}', '{"type": "bind", "extra": 1}', "[" * 100000,
])
def test_bad_json(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_mounts_json(text)


def test_mount_rejects_bad_fields() -> None:
    with pytest.raises(InvalidArgumentError):
        Mount("bind", 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        Mount("bind", "/x", options="ro")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        mount_from_json([])
    assert Mount("bind", "/x", options=["ro"]).options == ("ro",)  # type: ignore[arg-type]
