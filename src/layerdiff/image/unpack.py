"""Unpacking a whole image: every layer, in order, verified, into one tree or one overlay
upperdir per layer.

Each layer blob streams through a digest and size check into ``apply_layer``; the
diffID it returns is compared with the config's. Progress is kept in a journal
(``layerdiff.image.journal``), so an interrupted unpack run again finishes the job:

- ``snapshots`` mode applies each layer into a fresh ``DEST/.tmp-N`` renamed to
  ``DEST/N`` once complete, so a layer directory is whole or absent;
- ``flat`` mode applies into DEST itself; the layer that was being applied is applied
  again when that gives the right tree (``layerdiff.image.reapply``), otherwise DEST is
  emptied and the unpack starts over. Its journal lives beside DEST
  (``.NAME.layerdiff-unpack.json``): inside, it would be part of the root file system,
  and a layer's opaque marker at the root would delete it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from layerdiff.applier import apply_layer
from layerdiff.archive.fsroot import remove_tree
from layerdiff.diff import ApplyOptions, WhiteoutMode
from layerdiff.durable import sync_dir
from layerdiff.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    TargetError,
    UnavailableError,
)
from layerdiff.image import journal as journals
from layerdiff.image.journal import Journal
from layerdiff.image.platforms import Platform, default_platform, normalize
from layerdiff.image.reapply import reapplicable
from layerdiff.image.source import Image, ImageSource, Layer
from layerdiff.image.verify import check_diff_id, layer_blob

MODES = ("flat", "snapshots")
#: The journal's name in snapshots mode (inside DEST).
SNAPSHOTS_JOURNAL = "layerdiff-unpack.json"
_TMP_PREFIX = ".tmp-"

#: Called as ``progress(layer, status)``, status ``"skipped"`` (done by an earlier run),
#: ``"applying"`` or ``"applied"``.
Progress = Callable[[Layer, str], None]


@dataclass(frozen=True)
class UnpackResult:
    """What an unpack made: the image, and in snapshots mode the layer directories
    (bottom first) and the options that mount them."""

    dest: str
    mode: str
    image: Image
    layer_dirs: tuple[str, ...] = ()
    mount_options: str | None = None
    resumed: int = 0  # layers an earlier, interrupted run had completed

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object."""
        out: dict[str, Any] = {
            "dest": self.dest,
            "mode": self.mode,
            "config": self.image.config_digest,
            "manifest": self.image.manifest_digest,
            "platform": str(self.image.platform),
            "diff_ids": [layer.diff_id for layer in self.image.layers],
            "resumed": self.resumed,
        }
        if self.mode == "snapshots":
            out["layer_dirs"] = list(self.layer_dirs)
            out["mount_options"] = self.mount_options
        return out


def unpack_image(
    source: ImageSource,
    dest: str | os.PathLike[str],
    *,
    platform: Platform | None = None,
    mode: str = "flat",
    options: ApplyOptions | None = None,
    progress: Progress | None = None,
    start_over: bool = False,
) -> UnpackResult:
    """Unpack the image of ``source`` for ``platform`` (default: this machine's) into
    ``dest`` (created if missing), as ``mode`` ``"flat"`` (one tree) or ``"snapshots"``
    (one overlay upperdir per layer). ``options`` carry the applier's settings (limits,
    ownership, ``userxattr``, ``strict_oci``); their mode and parents are set here.

    An unpack of the same image found in DEST (its journal) is resumed. One of another
    image is refused unless ``start_over``, which empties DEST first (as it does for the
    same image); a non-empty DEST without a journal is always refused.
    """
    if mode not in MODES:
        raise InvalidArgumentError(f"unpack mode must be one of {', '.join(MODES)}, not {mode!r}")
    dest = os.path.abspath(dest)
    image = source.resolve(platform or default_platform(), strict=platform is not None)
    with _locked(dest):
        path = _journal_path(dest, mode)
        state = Journal(
            image=image.config_digest,
            platform=str(normalize(platform)) if platform else str(image.platform),
            mode=mode,
            diff_ids=[layer.diff_id for layer in image.layers],
            source=source.name,
        )
        state = _adopt(path, state, dest, start_over)
        unpacker = _Unpacker(
            source, image, dest, journal_path=path, state=state,
            options=options or ApplyOptions(), progress=progress,
        )
        if mode == "flat":
            unpacker.flat()
            return UnpackResult(dest, mode, image, resumed=unpacker.skipped)
        dirs = unpacker.snapshots()
    options_text = _mount_options(dest, dirs, options)
    return UnpackResult(dest, mode, image, dirs, options_text, unpacker.skipped)


@contextlib.contextmanager
def _locked(dest: str) -> Iterator[None]:
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(dest, 0o755)
        fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"the parent of {dest!r} does not exist") from None
    except NotADirectoryError:
        raise InvalidArgumentError(f"{dest!r} is not a directory") from None
    except OSError as err:
        raise TargetError(f"cannot create {dest!r}: {err.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UnavailableError(f"another unpack is writing into {dest}") from None
        yield
    finally:
        os.close(fd)


def _journal_path(dest: str, mode: str) -> str:
    if mode == "snapshots":
        return os.path.join(dest, SNAPSHOTS_JOURNAL)
    parent, name = os.path.split(dest.rstrip("/"))
    if not name:
        raise InvalidArgumentError("cannot unpack flat into / (its journal goes beside DEST)")
    return os.path.join(parent, f".{name}.layerdiff-unpack.json")


def _adopt(path: str, wanted: Journal, dest: str, start_over: bool) -> Journal:
    """The journal to go on with: the one found if it is of this unpack, else a new one."""
    found = journals.load(path)
    if found is not None and found.same_unpack(wanted) and not start_over:
        found.source = wanted.source
        return found
    if found is not None and not start_over:
        raise FailedPreconditionError(
            f"{dest} holds a {found.mode} unpack of image {found.image} ({found.platform}), not "
            f"of {wanted.image} ({wanted.platform}): start over to replace it"
        )
    if found is None and _entries(dest, path):
        raise FailedPreconditionError(f"{dest} is not empty and holds no unpack journal")
    _empty(dest, keep=path)
    journals.save(path, wanted)
    return wanted


def _entries(dest: str, journal_path: str) -> list[str]:
    return [n for n in os.listdir(dest) if os.path.join(dest, n) != journal_path]


def _empty(dest: str, keep: str) -> None:
    for name in _entries(dest, keep):
        _remove(os.path.join(dest, name))


def _fs(call: Callable[..., None], *args: object) -> None:
    """Run a file-system call on DEST; its failure is the target's (``TargetError``)."""
    try:
        call(*args)
    except OSError as err:
        raise TargetError(f"{call.__name__} {args[0]}: {err.strerror}") from None


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            # The applier's removal: a layer may have made a tree too deep for
            # Python 3.11's recursive shutil.rmtree.
            parent = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
            try:
                remove_tree(parent, os.path.basename(path))
            finally:
                os.close(parent)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise TargetError(f"cannot remove {path}: {err.strerror}") from None


class _Unpacker:
    def __init__(
        self,
        source: ImageSource,
        image: Image,
        dest: str,
        *,
        journal_path: str,
        state: Journal,
        options: ApplyOptions,
        progress: Progress | None,
    ) -> None:
        self.source, self.image, self.dest = source, image, dest
        self.journal_path, self.state = journal_path, state
        self.options = options
        self.progress = progress or (lambda layer, status: None)
        self.skipped = 0

    def _save(self) -> None:
        journals.save(self.journal_path, self.state)

    def flat(self) -> None:
        options = dataclasses.replace(self.options, mode=WhiteoutMode.NAIVE, parents=())
        if self.state.applying is not None and not self._reapplicable(self.state.applying):
            _empty(self.dest, keep=self.journal_path)
            self.state.done = 0
            self._save()
        for layer in self.image.layers:
            if layer.index < self.state.done:
                self.skipped += 1
                self.progress(layer, "skipped")
                continue
            self.state.applying = layer.index
            self._save()
            self.progress(layer, "applying")
            self._apply(layer, self.dest, options)
            journals.sync_filesystem(self.dest)
            self.state.done, self.state.applying = layer.index + 1, None
            self._save()
            self.progress(layer, "applied")

    def _reapplicable(self, index: int) -> bool:
        layer = self.image.layers[index]
        stream = self.source.open_layer(layer)
        try:
            return reapplicable(stream, layer.media_type)
        finally:
            stream.close()

    def snapshots(self) -> tuple[str, ...]:
        for name in os.listdir(self.dest):
            if name.startswith(_TMP_PREFIX):  # a layer an interrupted run did not finish
                _remove(os.path.join(self.dest, name))
        dirs: list[str] = []
        for layer in self.image.layers:
            final = os.path.join(self.dest, str(layer.index + 1))
            if layer.index < self.state.done and os.path.isdir(final):
                self.skipped += 1
                self.progress(layer, "skipped")
                dirs.append(final)
                continue
            self.state.done = min(self.state.done, layer.index)
            _remove(final)
            self.progress(layer, "applying")
            tmp = os.path.join(self.dest, _TMP_PREFIX + str(layer.index + 1))
            _fs(os.mkdir, tmp, 0o755)
            options = self.options
            if dirs:
                parents = tuple(reversed(dirs))
                options = dataclasses.replace(options, mode=WhiteoutMode.OVERLAY, parents=parents)
            else:
                # As containerd's overlayfs snapshotter: the first layer has nothing below
                # it and is applied as a plain tree.
                options = dataclasses.replace(options, mode=WhiteoutMode.NAIVE, parents=())
            try:
                self._apply(layer, tmp, options)
            except BaseException:
                _remove(tmp)
                raise
            journals.sync_filesystem(tmp)
            _fs(os.rename, tmp, final)
            sync_dir(self.dest)
            self.state.done = layer.index + 1
            self._save()
            self.progress(layer, "applied")
            dirs.append(final)
        for name in ("upper", "work"):
            if not os.path.isdir(os.path.join(self.dest, name)):
                _fs(os.mkdir, os.path.join(self.dest, name), 0o755)
        return tuple(dirs)

    def _apply(self, layer: Layer, target: str, options: ApplyOptions) -> None:
        with layer_blob(self.source, layer) as blob:
            desc = apply_layer(blob, target, options, media_type=layer.media_type)
        check_diff_id(layer, desc.digest)


def _mount_options(dest: str, dirs: tuple[str, ...], options: ApplyOptions | None) -> str:
    lower = ":".join(reversed(dirs))
    text = f"lowerdir={lower},upperdir={dest}/upper,workdir={dest}/work"
    if options is not None and options.userxattr:
        text += ",userxattr"
    return text
