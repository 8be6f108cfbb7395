"""Fuzz target: any bytes, applied as a layer, end in success or a ``LayerdiffError``
and change nothing outside the target directory.

The input's first byte picks how the rest is applied (``Setting``); the rest is the
layer, gzip-compressed first when bit 0 is set, so that half the inputs reach the tar
parser through the decompressor, and with its header checksums repaired first when
bit 5 is set, so that mutated headers get past the checksum test. The target lives in
a sandbox beside a sentinel (``tests.test_security.make_sentinel``): the corpus's
hostile layers aim at ``../outside`` and at ``corpus.PLACEHOLDER_OUTSIDE``, so a write
through either is seen. A finding is raised as ``tests.fuzz.Finding`` (libFuzzer
reports it as a crash), as is any exception that is not a ``LayerdiffError``.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from layerdiff import ApplyOptions, WhiteoutMode, apply_layer
from layerdiff.errors import LayerdiffError
from tests.fuzz import Finding, _atheris, check_message
from tests.support.corpus import PLACEHOLDER_OUTSIDE
from tests.test_security import make_sentinel, snapshot_outside

#: Sandboxes are named SANDBOX_PREFIX, the process ID, "-", random letters.
SANDBOX_PREFIX = "layerdiff-fuzz-"

BLOCK = 512

_MODES = (WhiteoutMode.NAIVE, WhiteoutMode.NAIVE, WhiteoutMode.OVERLAY, WhiteoutMode.AUFS)


@dataclass(frozen=True)
class Setting:
    """How one input is applied, decoded from its first byte."""

    gzip: bool = False
    mode: WhiteoutMode = WhiteoutMode.NAIVE
    strict_oci: bool = False
    #: Apply onto a small tree (with ``bin -> usr/bin``) rather than an empty directory,
    #: so that whiteouts, opaque markers and writes through symlinks have lower files.
    base_tree: bool = False
    #: Rewrite the checksum of every header first (``repair_checksums``): most mutations
    #: of a header would otherwise end at the checksum test.
    repair: bool = False

    @classmethod
    def decode(cls, byte: int) -> Setting:
        """Bit 0: gzip; bits 1-2: whiteout mode; bit 3: strict OCI; bit 4: base tree;
        bit 5: repair checksums."""
        return cls(bool(byte & 1), _MODES[(byte >> 1) & 3], bool(byte & 8), bool(byte & 16),
                   bool(byte & 32))

    def encode(self) -> int:
        """The byte ``decode`` turns into this setting."""
        return (int(self.gzip) | _MODES.index(self.mode) << 1 | int(self.strict_oci) << 3
                | int(self.base_tree) << 4 | int(self.repair) << 5)


def repair_checksums(layer: bytes) -> bytes:
    """``layer`` with a correct checksum in each header found by following the sizes.

    Walks the archive as a reader would (a header, then its data rounded up to blocks;
    a PAX ``size`` record is not honoured) and stops where a size cannot be read.
    """
    out = bytearray(layer)
    offset = 0
    while offset + BLOCK <= len(out):
        block = out[offset : offset + BLOCK]
        if not any(block):
            offset += BLOCK
            continue
        # The checksum counts its own field as eight spaces (8 * 0x20 = 256).
        checksum = sum(block[:148]) + 256 + sum(block[156:])
        out[offset + 148 : offset + 156] = b"%06o\0 " % checksum
        size = _size(bytes(block[124:136]))
        if size is None:
            break
        offset += BLOCK + -(-size // BLOCK) * BLOCK
    return bytes(out)


def _size(field: bytes) -> int | None:
    if field[0] & 0x80:  # base-256
        return int.from_bytes(field[1:], "big")
    digits = field.strip(b" \0")
    return int(digits, 8) if digits and all(48 <= d <= 55 for d in digits) else None


class Sandbox:
    """``watched/a/b/root`` (the target) beside ``outside`` and ``root-sibling``.

    The target is emptied after each apply, never replaced, so that its parent's
    times stay those of the first snapshot.
    """

    def __init__(self, parent: str | None = None) -> None:
        prefix = f"{SANDBOX_PREFIX}{os.getpid()}-"
        self.watched = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        near = self.watched / "a" / "b"
        near.mkdir(parents=True)
        make_sentinel(near / "outside")
        self.root = near / "root"
        self.root.mkdir(mode=0o755)
        st = os.lstat(self.root)
        self._owner = (st.st_uid, st.st_gid)
        self._before = snapshot_outside(self.watched, {self.root})

    def verify_and_reset(self) -> None:
        """Raise ``Finding`` if anything outside the target changed; empty the target."""
        if not stat.S_ISDIR(os.lstat(self.root).st_mode):
            raise Finding("the target directory was replaced")
        self._empty_root()
        after = snapshot_outside(self.watched, {self.root})
        changed = sorted(p for p in self._before.keys() | after.keys()
                         if self._before.get(p) != after.get(p))
        if changed:
            raise Finding(f"changed outside the target: {changed}")
        if os.path.lexists(os.path.dirname(PLACEHOLDER_OUTSIDE)):
            raise Finding(f"created {os.path.dirname(PLACEHOLDER_OUTSIDE)}")

    def _empty_root(self) -> None:
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
        # A "./" entry may have changed the target's own metadata.
        os.chown(self.root, *self._owner)
        os.chmod(self.root, 0o755)
        for name in os.listxattr(self.root):
            os.removexattr(self.root, name)

    def close(self) -> None:
        """Remove the sandbox."""
        shutil.rmtree(self.watched, ignore_errors=True)


def make_base_tree(root: Path) -> None:
    """A small root file system, as the corpus's ``BASE`` layer makes, without applying."""
    for d in ("etc", "usr", "usr/bin", "d", "d/sub"):
        (root / d).mkdir()
    for name, data in (("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"), ("usr/bin/sh", b"#!sh"),
                       ("d/a", b"a"), ("d/b", b"b"), ("d/sub/x", b"x")):
        (root / name).write_bytes(data)
    (root / "bin").symlink_to("usr/bin")
    os.link(root / "d/a", root / "d/hard")


def check_apply(sandbox: Sandbox, layer: bytes, setting: Setting) -> None:
    """Apply ``layer`` onto the sandbox's target; raise on anything but a clean outcome."""
    if setting.base_tree:
        make_base_tree(sandbox.root)
    if setting.repair:
        layer = repair_checksums(layer)
    blob = gzip.compress(layer, compresslevel=1, mtime=0) if setting.gzip else layer
    options = ApplyOptions(mode=setting.mode, strict_oci=setting.strict_oci)
    try:
        apply_layer(io.BytesIO(blob), sandbox.root, options)
    except LayerdiffError as err:
        check_message(err)
    sandbox.verify_and_reset()


_sandbox: Sandbox | None = None


def _sandbox_parent() -> str:
    """Where this process's sandbox goes, after removing those of processes now gone.

    libFuzzer ends the process with exit(3), which runs no Python cleanup: each sandbox
    is named after its process, and the next run sweeps the ones whose process is dead.
    """
    # tmpfs when there is one: thousands of applies per second, no disk wear.
    parent = os.environ.get("LAYERDIFF_FUZZ_TMPDIR") or (
        "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    for path in Path(parent).glob(f"{SANDBOX_PREFIX}*-*"):
        pid = path.name.removeprefix(SANDBOX_PREFIX).split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
    return parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def test_one_input(data: bytes) -> None:
    """libFuzzer's entry point: decode ``data`` and check it."""
    global _sandbox  # noqa: PLW0603 - one sandbox per fuzzing process, made on first use
    if _sandbox is None:
        _sandbox = Sandbox(_sandbox_parent())
    provider = _atheris.provider(data)
    setting = Setting.decode(provider.ConsumeUInt(1))
    check_apply(_sandbox, provider.ConsumeBytes(provider.remaining_bytes()), setting)
