"""No layer, however hostile, changes anything outside the directory it is applied to.

Every case of the corpus (``tests/support/corpus.py``) is applied, in naive and in
overlay mode, into a target directory that sits beside a sentinel directory:

    watched/a/b/outside/   the sentinel: a file, a directory, symlinks, an xattr
    watched/a/b/root-sibling/  a second one, named with the target's name as a prefix
    watched/a/b/root/      the target (every layer in naive mode, the first in overlay)
    watched/a/b/root.N/    overlay mode: the upperdir of layer N, over the earlier ones

Hostile cases aim absolute names, symlinks and hardlinks at the sentinel, and relative
ones at ``../outside`` and above. Everything under ``watched`` but the targets is
snapshotted before and after, down to inode numbers and change times, so that a write,
chmod, chown, utime, xattr, link or new path anywhere outside a target fails the test.
The outcome must be the corpus's (containerd's): success, or a ``LayerdiffError`` whose
message matches the case's pattern and is one printable line; any other exception, or
an apply that does not end within a bound, fails.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import resource
import shutil
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import BinaryIO, cast

import pytest

from layerdiff import ApplyOptions, LayerdiffError, WhiteoutMode, apply_layer
from layerdiff.errors import TargetError
from tests.support import corpus, tarbuild
from tests.support.corpus import PREFIX_SIBLING, SENTINEL_DIR, SENTINEL_FILE, Case

#: An apply that takes longer than this is a hang (the slowest case takes ~1 s).
APPLY_SECONDS = 60

MODES = [WhiteoutMode.NAIVE, WhiteoutMode.OVERLAY]


# -- the sentinel ------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """Everything an apply could change about one path outside the target."""

    mode: int
    uid: int
    gid: int
    size: int
    nlink: int
    ino: int
    mtime_ns: int
    ctime_ns: int
    content: str | None
    target: str | None
    xattrs: tuple[tuple[str, bytes], ...]


def _observe(path: str, st: os.stat_result) -> Observed:
    content = target = None
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            content = hashlib.sha256(f.read()).hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
        xattrs = tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in names)
    except OSError:
        xattrs = ()
    return Observed(
        mode=st.st_mode,
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
        nlink=st.st_nlink,
        ino=st.st_ino,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        content=content,
        target=target,
        xattrs=xattrs,
    )


def snapshot_outside(watched: Path, targets: set[Path]) -> dict[str, Observed]:
    """Every path under ``watched`` (itself included) except inside ``targets``."""
    seen: dict[str, Observed] = {}
    pending = [watched]
    while pending:
        path = pending.pop()
        st = os.lstat(path)
        seen[os.path.relpath(path, watched)] = _observe(str(path), st)
        if stat.S_ISDIR(st.st_mode):
            for child in sorted(path.iterdir()):
                if child in targets:
                    # The target's own inode is outside the apply's reach: it is the
                    # caller's directory. Only what lies inside it is the layer's.
                    seen[os.path.relpath(child, watched)] = _observe_target_root(child)
                else:
                    pending.append(child)
    return seen


def _observe_target_root(path: Path) -> Observed:
    # A target's root is not compared at all: applying a layer legitimately changes
    # its mtime (new entries) and, for an opaque marker at the layer root in overlay
    # form, its xattrs. It must stay a directory that is no symlink.
    st = os.lstat(path)
    return Observed(st.st_mode, 0, 0, 0, 0, st.st_ino, 0, 0, None, None, ())


def make_sentinel(outside: Path) -> None:
    """The sentinel directory hostile cases aim at."""
    outside.mkdir()
    (outside / SENTINEL_FILE).write_bytes(b"sentinel: must never change\n")
    os.setxattr(outside / SENTINEL_FILE, "user.sentinel", b"1")
    (outside / SENTINEL_DIR).mkdir()
    (outside / SENTINEL_DIR / "inner").write_bytes(b"inner\n")
    (outside / "link").symlink_to(SENTINEL_FILE)
    (outside / "dirlink").symlink_to(SENTINEL_DIR)
    for path in (outside / SENTINEL_FILE, outside / SENTINEL_DIR / "inner", outside):
        os.utime(path, ns=(1_000_000_000_123, 1_000_000_000_456))
    sibling = outside.parent / PREFIX_SIBLING
    sibling.mkdir()
    (sibling / SENTINEL_FILE).write_bytes(b"sentinel beside the target\n")


# -- applying ------------------------------------------------------------------------------


class ApplyHung(Exception):
    """An apply did not end within APPLY_SECONDS."""


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Raise ``ApplyHung`` in the main thread if the block runs longer than ``seconds``."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise ApplyHung(f"apply still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def targets_for(case: Case, base: Path, mode: WhiteoutMode) -> list[Path]:
    """Where each layer goes: one directory (naive), or one upperdir per layer (overlay)."""
    if mode is WhiteoutMode.NAIVE:
        return [base / "root"] * max(1, len(case.layers))
    return [base / "root"] + [base / f"root.{i}" for i in range(1, len(case.layers))]


def apply_case(case: Case, targets: list[Path], mode: WhiteoutMode) -> LayerdiffError | None:
    """Apply the case's layers in order; the ``LayerdiffError`` that stopped it, if any."""
    with deadline(APPLY_SECONDS):
        for i, blob in enumerate(case.layers):
            lower = targets[:i] if mode is WhiteoutMode.OVERLAY else []
            parents = tuple(str(t) for t in reversed(lower))
            try:
                apply_layer(io.BytesIO(blob), targets[i], ApplyOptions(mode=mode, parents=parents))
            except LayerdiffError as err:
                return err
    return None


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The watched directory; the target and sentinel live three levels below it."""
    return tmp_path_factory.mktemp("security")


@pytest.fixture(scope="module")
def aimed_cases(watched: Path) -> dict[str, Case]:
    """The corpus, its hostile cases aimed at this module's sentinel directory."""
    outside = watched / "a" / "b" / "outside"
    return {case.name: case for case in corpus.build_cases(str(outside))}


@pytest.fixture
def base(watched: Path) -> Iterator[Path]:
    """A fresh watched/a/b with the sentinel in it, emptied again after the test."""
    top = watched / "a"
    shutil.rmtree(top, ignore_errors=True)
    base = top / "b"
    base.mkdir(parents=True)
    make_sentinel(base / "outside")
    yield base
    shutil.rmtree(top, ignore_errors=True)


def _skip_unless_possible(case: Case) -> None:
    if case.root_only and os.geteuid() != 0:
        pytest.skip("needs root (devices, ownership)")


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("name", [case.name for case in corpus.CASES])
def test_layer_changes_nothing_outside_its_target(
    name: str, mode: WhiteoutMode, aimed_cases: dict[str, Case], watched: Path, base: Path
) -> None:
    case = aimed_cases[name]
    _skip_unless_possible(case)
    targets = targets_for(case, base, mode)
    for target in targets:
        target.mkdir(exist_ok=True)
    before = snapshot_outside(watched, set(targets))

    error = apply_case(case, targets, mode)

    after = snapshot_outside(watched, set(targets))
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert changed == [], f"outside the target: {changed}"
    for target in targets:
        assert stat.S_ISDIR(os.lstat(target).st_mode), f"{target} is no longer a directory"
    if case.expect == "ok":
        assert error is None, f"refused: {error}"
    else:
        assert error is not None, f"accepted; containerd refuses it ({case.note})"
        assert re.search(case.error, str(error), re.IGNORECASE), str(error)


@pytest.mark.parametrize(
    "name", [case.name for case in corpus.CASES if case.expect == "error"]
)
def test_error_message_is_one_printable_line(
    name: str, aimed_cases: dict[str, Case], base: Path
) -> None:
    case = aimed_cases[name]
    _skip_unless_possible(case)
    target = base / "root"
    target.mkdir()
    error = apply_case(case, [target] * len(case.layers), WhiteoutMode.NAIVE)
    assert error is not None
    message = str(error)
    # isprintable() is False for newlines, control characters and lone surrogates (a
    # name's invalid UTF-8 leaking into the message, which no terminal can print).
    assert message and message.isprintable(), repr(message)


def test_nothing_after_a_refused_entry_is_applied(base: Path) -> None:
    # Python tarfile CVE-2025-4435: told to ignore errors, tarfile went on to extract
    # members its filter had refused. Here an error ends the apply: no later entry lands.
    target = base / "root"
    target.mkdir()
    outside = base / "outside"
    blob = tarbuild.layer(
        tarbuild.reg("before", b"b"),
        tarbuild.hardlink("h", f"{outside}/{SENTINEL_FILE}"),
        tarbuild.reg("after", b"a"),
        tarbuild.symlink("l", str(outside)),
    )
    with deadline(APPLY_SECONDS), pytest.raises(LayerdiffError, match=r"(?i)no such file"):
        apply_layer(io.BytesIO(blob), target)
    assert os.listdir(target) == ["before"]


# -- sources that never end or break -------------------------------------------------------


class GeneratedSource(io.BufferedIOBase):
    """``head``, then ``zeros`` zero bytes made on demand, then EOF or ``error``.

    Stands for a layer too long to hold in memory, or a content store whose stream
    breaks (a network error) partway.
    """

    def __init__(self, head: bytes, zeros: int, error: OSError | None = None) -> None:
        self.head, self.zeros, self.error = head, zeros, error

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        size = 1 << 20 if size is None or size < 0 else size
        if self.head:
            out, self.head = self.head[:size], self.head[size:]
            return out
        if self.zeros:
            n = min(size, self.zeros)
            self.zeros -= n
            return bytes(n)
        if self.error is not None:
            raise self.error
        return b""


def test_a_long_layer_is_streamed_in_constant_memory(tmp_path: Path) -> None:
    # A layer that never ends cannot be told from a long one until it ends; what an
    # applier owes is to stream it: bounded memory, steady progress. 512 MiB of bytes
    # after the end of the archive must be read (they count towards the digest) without
    # being held.
    head = tarbuild.layer(tarbuild.reg("f", b"f"))
    zeros = 512 << 20
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with deadline(APPLY_SECONDS):
        desc = apply_layer(cast(BinaryIO, GeneratedSource(head, zeros)), tmp_path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) // 1024
    assert desc.size == len(head) + zeros
    assert grown_mib < 128, f"peak memory grew by {grown_mib} MiB for a 512 MiB stream"


@pytest.mark.parametrize(
    ("head", "zeros"),
    [
        (b"", 0),
        (tarbuild.reg("f", b"x" * 5000)[:2048], 0),
        (tarbuild.layer(tarbuild.reg("f", b"f")), 3 << 20),
    ],
    ids=["at once", "inside an entry", "after the end of the archive"],
)
def test_a_source_that_breaks_raises_a_layerdiff_error(
    head: bytes, zeros: int, tmp_path: Path
) -> None:
    broken = GeneratedSource(head, zeros, OSError(errno.EIO, "Input/output error"))
    with deadline(APPLY_SECONDS), pytest.raises(LayerdiffError, match="Input/output error") as info:
        apply_layer(cast(BinaryIO, broken), tmp_path)
    # The layer's source failed, not the target: TargetError would send the caller
    # looking at the wrong file system.
    assert not isinstance(info.value, TargetError), str(info.value)


def test_no_helper_program_is_looked_up_in_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moby CVE-2026-41567: a decompressor found through PATH (the target's, when the
    # target is a root file system) runs as root. Every name a decoder could go by is
    # planted in PATH; none may run.
    planted = tmp_path / "bin"
    planted.mkdir()
    ran = tmp_path / "ran"
    for name in ("gzip", "gunzip", "pigz", "unpigz", "igzip", "zstd", "unzstd", "xz", "tar"):
        script = planted / name
        script.write_text(f"#!/bin/sh\necho {name} >> {ran}\nexit 1\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", str(planted))
    plain = tarbuild.layer(tarbuild.reg("f", b"f"))
    for blob in (tarbuild.gzip(plain), tarbuild.zstd(plain)):
        target = tmp_path / f"root{len(list(tmp_path.iterdir()))}"
        target.mkdir()
        apply_layer(io.BytesIO(blob), target)
        assert (target / "f").read_bytes() == b"f"
    assert not ran.exists(), ran.read_text()
