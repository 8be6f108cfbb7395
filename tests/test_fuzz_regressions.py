"""Every input a fuzz target (``tests/fuzz``) found a fault with, and its clean outcome.

Each test gives the minimized input inline, decoded the way the target decodes it
(the fuzzer's text inputs are byte 0x01 then ASCII), and checks it with the target's own
check, which raises on any outcome but the clean one; then it states that outcome.
docs/reliability.md says how a crash file becomes a test here.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from layerdiff import apply_layer
from layerdiff.content.filters import parse_filters
from layerdiff.errors import InvalidArgumentError
from layerdiff.mount.spec import parse_mounts_json
from tests.fuzz.fuzz_apply import Sandbox, Setting, check_apply
from tests.fuzz.fuzz_filters import check_filter_text
from tests.fuzz.fuzz_mount_options import check_mount_text
from tests.support import tarbuild

# -- apply -----------------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(str(tmp_path))


@pytest.mark.parametrize(
    ("field", "perm"),
    [
        (b"\xff" * 8, 0o7777),  # base-256 -1
        (b"\x80\x00\x00\x01\x00\x00\x01\xed", 0o755),  # base-256 2**32 + 0o755
    ],
    ids=["negative", "past-32-bits"],
)
def test_mode_out_of_range_keeps_its_low_bits(
    field: bytes, perm: int, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Found by fuzz_apply: the socket test called stat.S_IFMT(mode), which raises
    # OverflowError for a mode that is negative or does not fit 32 bits. Go's tar reader
    # takes such a mode, and containerd keeps its low bits (os.FileMode is 32 bits).
    layer = tarbuild.layer(tarbuild.reg("f", b"x", mode=field))
    for setting in (Setting(), Setting(gzip=True, base_tree=True, repair=True)):
        check_apply(sandbox, layer, setting)
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(layer), dest)
    assert (dest / "f").read_bytes() == b"x"
    assert (dest / "f").stat().st_mode & 0o7777 == perm

@pytest.mark.root
@pytest.mark.parametrize(
    ("major", "minor", "rdev"),
    [(2**31, 0, (0, 0)), (-1, -1, (0xFFF, 0xFFFFF)), (2**31 + 1, 2**20 + 3, (1, 3))],
    ids=["past-31-bits", "negative", "past-device-bits"],
)
def test_device_numbers_out_of_range_keep_what_mknod_takes(
    major: int, minor: int, rdev: tuple[int, int], sandbox: Sandbox, tmp_path: Path
) -> None:
    # Found by fuzz_apply: os.makedev takes C ints, so a base-256 device field past
    # 2**31 raised OverflowError. containerd passes unix.Mkdev(uint32(major),
    # uint32(minor)) to mknod(2), which keeps 32 bits: 12 of major, 20 of minor.
    if os.geteuid() != 0:
        pytest.skip("needs root (mknod)")
    layer = tarbuild.layer(tarbuild.chardev("c", major, minor))
    for setting in (Setting(), Setting(gzip=True, base_tree=True, repair=True)):
        check_apply(sandbox, layer, setting)
    dest = tmp_path / "dest"
    dest.mkdir()
    apply_layer(io.BytesIO(layer), dest)
    st = os.lstat(dest / "c")
    assert stat.S_ISCHR(st.st_mode)
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == rdev


# -- mount_options ---------------------------------------------------------------------------


def test_unknown_json_field_with_a_control_character_is_named_on_one_line() -> None:
    # Found by fuzz_mount_options: the unknown field's name went into the message raw,
    # so a DEL (or a newline) in it broke the one-line message.
    text = '{"type": "overlay", "option\x7f": []}'
    check_mount_text(text)
    with pytest.raises(InvalidArgumentError) as caught:
        parse_mounts_json(text)
    assert str(caught.value) == "mount JSON has unknown fields: 'option\\x7f'"


# -- filters ---------------------------------------------------------------------------------


def test_bad_escape_of_a_control_character_is_named_on_one_line() -> None:
    # Found by fuzz_filters: the character after the backslash went into the message raw.
    text = "name~=|a\\\x01|"
    check_filter_text(text)
    with pytest.raises(InvalidArgumentError, match=r"bad escape sequence '\\\\\\x01'$"):
        parse_filters([text])


@pytest.mark.parametrize("escape", ["\\x+1", "\\x 1", "\\u1_23", "\\x-1"])
def test_numeric_escape_takes_digits_only(escape: str) -> None:
    # Seen while fixing the above: int() also takes a sign, spaces and underscores, so
    # these were read as characters; Go's strconv.Unquote (containerd's) refuses them.
    with pytest.raises(InvalidArgumentError, match="bad escape sequence"):
        parse_filters([f'name=="{escape}"'])
