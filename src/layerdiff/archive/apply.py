"""Applying a tar changeset onto a directory, as containerd 1.7's ``applyNaive`` does.

Entries are applied in order. Each name is cleaned (Go's ``path.Clean``), its parent is
resolved inside the root (``rootpath``) and created if missing, whiteouts are converted
for the target's mode (``whiteout``), an existing path is removed unless a directory
meets a directory, and the entry is created with its owner, xattrs, mode and times, in
that order (chown clears setuid bits, so the mode comes after it). Directory times are
set at the end, since creating children changes them.

Where containerd's overlay form breaks the equality "merged view == naive result", this
module follows the naive result instead; ``docs/semantics.md`` lists each place.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from layerdiff.archive import rootpath, tarstream
from layerdiff.archive.fsroot import FsRoot, is_whiteout
from layerdiff.archive.overlayview import UPPER, OverlayView
from layerdiff.archive.tarstream import TarHeader, TarReader
from layerdiff.archive.whiteout import (
    OPAQUE_MARKER,
    WHITEOUT_PREFIX,
    validate_whiteout_name,
)
from layerdiff.diff import ApplyOptions, WhiteoutMode
from layerdiff.errors import (
    CorruptLayerError,
    LayerdiffError,
    LimitExceededError,
    TargetError,
    UnsupportedError,
)

log = logging.getLogger("layerdiff.apply")

#: Go's maxTime for a 64-bit timespec: time.Unix(0, 1<<63-1).
_MAX_TIME_NS = (1 << 63) - 1

_KIND_BITS = {
    tarstream.CHAR: stat.S_IFCHR,
    tarstream.BLOCKDEV: stat.S_IFBLK,
    tarstream.FIFO: stat.S_IFIFO,
}


@dataclass(frozen=True)
class _Process:
    """Facts about this process that decide how entries are written."""

    umask: int
    in_userns: bool
    is_root: bool


def _process_facts() -> _Process:
    umask = 0o022
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
    except OSError:
        pass
    in_userns = False
    try:
        with open("/proc/self/uid_map", encoding="ascii") as uid_map:
            in_userns = uid_map.read().split() != ["0", "0", "4294967295"]
    except OSError:
        pass
    return _Process(umask=umask, in_userns=in_userns, is_root=os.geteuid() == 0)


def _owner_id(value: int) -> int:
    # Go hands the int to the syscall, which keeps its low 32 bits; (uid_t)-1 means
    # "leave unchanged" to the kernel, as it does to os.chown.
    value &= 0xFFFFFFFF
    return -1 if value == 0xFFFFFFFF else value


class Applier:
    """Applies the entries of one tar stream onto ``root``."""

    def __init__(self, root: FsRoot, options: ApplyOptions) -> None:
        self.root = root
        self.options = options
        self.proc = _process_facts()
        self.same_owner = self.proc.is_root if options.same_owner is None else options.same_owner
        self.parents = [os.fspath(p) for p in options.parents]
        self.opaque_xattr = "user.overlay.opaque" if options.userxattr else "trusted.overlay.opaque"
        self.overlay = (
            OverlayView(root, self.parents, self.opaque_xattr)
            if options.mode is WhiteoutMode.OVERLAY
            else None
        )
        self.lookup = self.overlay.lookup_symlink if self.overlay else root.lookup_symlink
        self.unpacked: set[str] = set()
        self.dirs: list[TarHeader] = []
        #: The mode bits a new file gets from open(2) under the umask: more needs fchmod.
        self._umasked_bits = 0o777 & ~self.proc.umask
        self._bound_times = not options.strict_oci

    # -- the loop ----------------------------------------------------------------------

    def apply(self, reader: TarReader) -> None:
        """Apply every entry of ``reader``, then set directory times."""
        last = ""
        entries = 0
        max_entries = self.options.limits.max_entries
        while True:
            try:
                hdr = reader.next()
            except CorruptLayerError as err:
                where = f"after tar entry {_shown(last)}" if last else "at the first tar entry"
                raise type(err)(f"{err} ({where})") from None
            if hdr is None:
                break
            entries += 1
            if max_entries is not None and entries > max_entries:
                raise LimitExceededError(f"the layer has more than {max_entries} entries")
            last = hdr.name
            try:
                self._entry(hdr, reader)
            except LayerdiffError as err:
                raise type(err)(f"tar entry {_shown(hdr.name)}: {err}") from None
            except OSError as err:
                raise _target_error(hdr.name, err) from None
        for hdr in self.dirs:
            try:
                path = self._resolve(hdr.name)
                if self.overlay is not None:
                    self._check_not_whited_out(path)
                atime, mtime = self._times(hdr)
                self.root.lutimes(path, atime, mtime)
            except LayerdiffError as err:
                raise type(err)(f"tar entry {_shown(hdr.name)}: {err}") from None
            except OSError as err:
                raise _target_error(hdr.name, err) from None

    def _entry(self, hdr: TarHeader, reader: TarReader) -> None:
        name = hdr.name
        # Fast path for nearly every entry of a layer: a regular file whose name is
        # clean already (rootpath.clean's own test, minus a leading "/"), so that it
        # cannot be ".", "..", or a whiteout (no component starts with "."), in a
        # directory already created or checked by this layer (the resolution and
        # mkparent below would end at once). The rest is what the full path does.
        if (
            hdr.typeflag == tarstream.REG
            and name
            and name[0] not in "./"
            and name[-1] != "/"
            and "//" not in name
            and "/." not in name
            and hdr.mode & 0o170000 != stat.S_IFSOCK
        ):
            try:
                fd = self.root.create_in_known_dir(name, hdr.mode & 0o777)
            except FileExistsError:
                self._place(hdr, name, reader)  # looks at what is there, as below
                return
            if fd is not None:
                self._fill_file(fd, hdr, name, hdr.mode & 0o7777, reader)
                self.unpacked.add(name)
                return
        hdr.name = rootpath.clean(name)
        if hdr.typeflag in (tarstream.CHAR, tarstream.BLOCKDEV) and self.proc.in_userns:
            log.warning("file %r ignored: devices cannot be created in a user namespace", hdr.name)
            return
        # Masked by hand: stat.S_IFMT overflows on a negative or huge (base-256) mode.
        if hdr.typeflag == tarstream.REG and hdr.mode & 0o170000 == stat.S_IFSOCK:
            # tar has no socket type; socket mode bits on a file entry mean a writer
            # archived one anyway. A socket means nothing without its process: skip it.
            log.warning("file %r ignored: sockets cannot be unpacked", hdr.name)
            return
        head, base = rootpath.split(hdr.name)
        parent = self._resolve(head)
        if base in ("", ".", ".."):
            log.debug("file %r ignored: resolved to root", hdr.name)
            return
        path = f"{parent}/{base}" if parent else base
        if parent:
            self._mkparent(parent)
        validate_whiteout_name(base)
        if base.startswith(WHITEOUT_PREFIX) and self.options.mode is not WhiteoutMode.AUFS:
            if base == OPAQUE_MARKER:
                self._opaque(parent)
            else:
                self._whiteout(hdr, parent, base[len(WHITEOUT_PREFIX) :])
            return
        if hdr.typeflag == tarstream.PAX_GLOBAL:
            self._remove(path, hdr)  # containerd replaces the path, then ignores the entry
            self.unpacked.add(path)
            return
        self._place(hdr, path, reader)

    def _place(self, hdr: TarHeader, path: str, reader: TarReader) -> None:
        """Create the entry at ``path`` (resolved, its parent a directory), replacing
        whatever is there unless a directory meets a directory."""
        replaces_whiteout = False
        try:
            # Optimistic: most paths are new, so create first and look only on EEXIST
            # (one lstat per entry saved); the outcome is containerd's lstat-then-replace.
            self._create(hdr, path, reader, None)
        except FileExistsError:
            existing = self.root.lstat(path)
            if existing is None or not (
                stat.S_ISDIR(existing.st_mode) and hdr.typeflag == tarstream.DIR
            ):
                replaces_whiteout = existing is not None and is_whiteout(existing)
                self.root.remove_all(path)
                existing = None
            self._create(hdr, path, reader, existing)
        if hdr.typeflag == tarstream.DIR:
            self.dirs.append(hdr)
            if replaces_whiteout and self._lower_has_dir(path):
                # A directory deleted and recreated in overlay form: without the opaque
                # marker the lower directory's children would show through again.
                self.root.lsetxattr(path, self.opaque_xattr, b"y")
        self.unpacked.add(path)

    def _check_not_whited_out(self, path: str) -> None:
        # A directory whited out later in its own layer: the naive applier fails to set
        # its times (the path is gone), and so must the overlay form.
        st = self.root.lstat(path)
        if st is not None and is_whiteout(st):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)

    def _resolve(self, name: str) -> str:
        fast = name.strip("/")
        if self.root.is_known_dir(fast):
            return fast
        return self.root.resolve(name, self.lookup)

    def _lower_entry(self, path: str) -> os.stat_result | None:
        """What the lower layers alone show at ``path`` (``None`` if nothing)."""
        if self.overlay is None:
            return None
        try:
            found = self.overlay.lookup(path, lowers_only=True)
        except OSError:  # a parent that is not a directory: nothing can be there
            return None
        return None if found is None else found[1]

    def _lower_has(self, path: str) -> bool:
        return self._lower_entry(path) is not None

    def _lower_has_dir(self, path: str) -> bool:
        st = self._lower_entry(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    # -- parents -----------------------------------------------------------------------

    def _mkparent(self, path: str) -> None:
        """Make sure directory ``path`` exists (containerd's ``mkparent``)."""
        if self.root.is_known_dir(path):
            return
        st = self.root.lstat(path)
        if st is not None and is_whiteout(st) and self.overlay is not None:
            # Deleted earlier in this upperdir: recreate it, hiding what lies below.
            self.root.remove_all(path)
            self._mkparent_create(path, copy_from_parents=False)
            if self._lower_has_dir(path):
                self.root.lsetxattr(path, self.opaque_xattr, b"y")
            return
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                self.root.mark_dir(path)
                return
            raise NotADirectoryError(errno.ENOTDIR, "parent is not a directory", path)
        if self.overlay is not None:
            below = self.overlay.lookup(path, lowers_only=False)
            if below is not None and not stat.S_ISDIR(below[1].st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "parent is not a directory", path)
        # containerd recurses up to the first existing ancestor; a loop, so that a name
        # of thousands of components cannot exhaust Python's stack.
        missing = [path]
        up = path.rpartition("/")[0]
        while up and not self.root.is_known_dir(up) and self.root.lstat(up) is None:
            missing.append(up)
            up = up.rpartition("/")[0]
        if up and not self.root.is_known_dir(up):
            self._mkparent(up)  # exists: checks it is a directory (or a whiteout to replace)
        for directory in reversed(missing):
            self._mkparent_create(directory, copy_from_parents=True)

    def _mkparent_create(self, path: str, *, copy_from_parents: bool) -> None:
        try:
            self.root.mkdir(path, 0o755)
        except FileExistsError:
            st = self.root.lstat(path)
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise
            self.root.mark_dir(path)
            return
        fd = self.root.open_dir(path)
        try:
            os.fchmod(fd, 0o755)
            if copy_from_parents:
                self._copy_parent_dir_info(path, fd)
        finally:
            os.close(fd)
        self.root.mark_dir(path)

    def _copy_parent_dir_info(self, path: str, fd: int) -> None:
        for parent_root in self.parents:
            resolved = rootpath.root_path("/" + path, _host_lookup(parent_root))
            source = os.path.join(parent_root, resolved)
            try:
                st = os.lstat(source)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                return  # replaced in a parent: do not copy attributes
            os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            _copy_xattrs(source, fd)
            return
        log.debug("parent directory %r not found: default permissions (0755) used", path)

    # -- whiteouts ---------------------------------------------------------------------

    def _opaque(self, directory: str) -> None:
        if self.root.lstat(directory) is None:
            raise FileNotFoundError(errno.ENOENT, "opaque directory does not exist", directory)
        self._remove_not_unpacked(directory)
        if self.overlay is None:
            return
        self.root.lsetxattr(directory, self.opaque_xattr, b"y")
        if not directory:
            # overlayfs ignores the opaque marker on the upper root: hide each lower
            # entry with a whiteout of its own.
            for name in self.overlay.lower_names(""):
                if self.root.lstat(name) is None:
                    self._make_whiteout(name, 0, 0)

    def _remove_not_unpacked(self, directory: str) -> None:
        """Remove everything under ``directory`` that this layer did not create."""
        pending = [directory]
        while pending:
            current = pending.pop()
            try:
                names = self.root.listdir(current)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for name in names:
                child = f"{current}/{name}" if current else name
                if child not in self.unpacked:
                    self.root.remove_all(child)
                    continue
                st = self.root.lstat(child)
                if st is not None and stat.S_ISDIR(st.st_mode):
                    pending.append(child)

    def _whiteout(self, hdr: TarHeader, directory: str, name: str) -> None:
        path = f"{directory}/{name}" if directory else name
        if self.options.strict_oci and self._created_here(path):
            # image-spec: a whiteout hides lower layers only, never its own layer's files.
            if path not in self.unpacked:
                self._remove_not_unpacked(path)
            return
        self._remove(path, hdr)

    def _remove(self, path: str, hdr: TarHeader) -> None:
        """Make ``path`` absent, in this layer's form (a whiteout in overlay mode)."""
        self.root.remove_all(path)
        if self.overlay is not None and self._lower_has(path):
            # Only where a lower layer has the path: in a directory that no lower layer
            # has, overlayfs would list the whiteout itself as an unreadable entry.
            self._make_whiteout(path, hdr.uid, hdr.gid)

    def _created_here(self, path: str) -> bool:
        prefix = path + "/"
        return path in self.unpacked or any(p.startswith(prefix) for p in self.unpacked)

    def _make_whiteout(self, path: str, uid: int, gid: int) -> None:
        self.root.mknod(path, stat.S_IFCHR, 0)
        if self.same_owner:
            self.root.lchown(path, _owner_id(uid), _owner_id(gid))

    # -- creating entries --------------------------------------------------------------

    def _create(
        self, hdr: TarHeader, path: str, reader: TarReader, existing: os.stat_result | None
    ) -> None:
        flag = hdr.typeflag
        mode = hdr.mode & 0o7777
        if flag == tarstream.REG:
            self._create_file(hdr, path, mode, reader)
        elif flag == tarstream.DIR:
            if existing is None:
                self.root.mkdir(path, mode & 0o777)
            fd = self.root.open_dir(path)
            try:
                self._set_owner_xattrs(fd, hdr, path)
                os.fchmod(fd, mode)
            except BaseException:
                os.close(fd)
                raise
            self.root.adopt_dir_fd(path, fd)
            self.root.mark_dir(path)
        elif flag == tarstream.SYMLINK:
            self.root.symlink(hdr.linkname, path)
            self._finish_by_name(hdr, path, chmod=False)
        elif flag in _KIND_BITS:
            dev = _device_number(hdr.devmajor, hdr.devminor)
            self.root.mknod(path, _KIND_BITS[flag] | mode, dev)
            self._finish_by_name(hdr, path, chmod=True)
        elif flag == tarstream.LINK:
            self._hardlink(hdr, path)
            self._finish_by_name(hdr, path, chmod=True)
        else:
            raise UnsupportedError(f"unhandled tar header type {ord(flag)}")

    def _create_file(self, hdr: TarHeader, path: str, mode: int, reader: TarReader) -> None:
        self._fill_file(self.root.create_file(path, mode & 0o777), hdr, path, mode, reader)

    def _fill_file(self, fd: int, hdr: TarHeader, path: str, mode: int, reader: TarReader) -> None:
        """Data, owner, xattrs, mode and times of a new regular file; closes ``fd``."""
        # The hottest code of an apply: calls are inlined where that saves time.
        try:
            whole = reader.data_at_once()
            if whole is None:
                _write_all(fd, reader.data())
            else:
                written = os.write(fd, whole)
                if written != len(whole):  # short write: go on with the rest
                    _write_all(fd, [whole[written:]])
            if self.same_owner:
                uid, gid = hdr.uid, hdr.gid
                if not (0 <= uid < 0xFFFFFFFF and 0 <= gid < 0xFFFFFFFF):
                    uid, gid = _owner_id(uid), _owner_id(gid)
                os.fchown(fd, uid, gid)
            if hdr.pax:
                self._set_xattrs(fd, hdr, path)
            if mode != mode & self._umasked_bits:
                os.fchmod(fd, mode)
            os.utime(fd, ns=self._times(hdr))
        finally:
            os.close(fd)

    def _set_owner_xattrs(self, fd: int, hdr: TarHeader, path: str) -> None:
        """Owner and xattrs of a regular file or directory, through its open fd."""
        if self.same_owner:
            os.fchown(fd, _owner_id(hdr.uid), _owner_id(hdr.gid))
        if hdr.pax:  # no xattrs without PAX records (saves a generator per entry)
            self._set_xattrs(fd, hdr, path)

    def _set_xattrs(self, fd: int, hdr: TarHeader, path: str) -> None:
        for key, value in self._layer_xattrs(hdr):
            try:
                os.setxattr(fd, key, value)
            except OSError as err:
                self._xattr_failed(err, key, path, regular_or_dir=True)

    def _finish_by_name(self, hdr: TarHeader, path: str, *, chmod: bool) -> None:
        """Owner, xattrs, mode and times for entries that cannot be opened for writing."""
        if self.same_owner:
            self.root.lchown(path, _owner_id(hdr.uid), _owner_id(hdr.gid))
        for key, value in self._layer_xattrs(hdr):
            try:
                self.root.lsetxattr(path, key, value)
            except OSError as err:
                st = self.root.lstat(path)
                regular_or_dir = st is not None and (
                    stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)
                )
                self._xattr_failed(err, key, path, regular_or_dir=regular_or_dir)
        if chmod:
            self.root.chmod_nofollow(path, hdr.mode & 0o7777)
        atime, mtime = self._times(hdr)
        self.root.lutimes(path, atime, mtime)

    def _layer_xattrs(self, hdr: TarHeader) -> Iterable[tuple[str, bytes]]:
        overlay_prefix = self._overlay_xattr_prefix()
        max_bytes = self.options.limits.max_xattr_bytes
        for name, value in hdr.xattrs():
            if len(value) > max_bytes:
                shown = name if name.isprintable() and len(name) <= 200 else _shown(name)
                raise LimitExceededError(
                    f"xattr {shown} of {len(value)} bytes exceeds the limit of {max_bytes} bytes"
                )
            key = name
            if key.startswith("trusted."):
                # containerd refuses admin attributes from archives (ENOTSUP, logged).
                log.warning("ignored xattr %s in archive: admin attributes not supported", key)
                continue
            if self.overlay is not None and key.startswith(overlay_prefix):
                # Would be read by overlayfs itself; the escaped name shows through the
                # mount as the original one (Linux >= 6.7 xattr escaping).
                key = overlay_prefix + "overlay." + key[len(overlay_prefix) :]
            yield key, value

    def _overlay_xattr_prefix(self) -> str:
        return "user.overlay." if self.options.userxattr else "trusted.overlay."

    def _xattr_failed(self, err: OSError, key: str, path: str, *, regular_or_dir: bool) -> None:
        if err.errno == errno.EPERM and key.startswith("user.") and not regular_or_dir:
            log.warning("ignored xattr %s in archive: %s", key, err.strerror)
            return
        if err.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            log.warning("ignored xattr %s in archive: %s", key, err.strerror)
            return
        raise OSError(err.errno, f"failed to set xattr {_shown(key)}: {err.strerror}", path)

    def _times(self, hdr: TarHeader) -> tuple[int, int]:
        mtime = hdr.mtime_ns
        atime = hdr.atime_ns
        if atime is None or atime < mtime:
            atime = mtime
        # mtime <= atime: both are in range when these two are (the usual case).
        if self._bound_times and not (mtime >= 0 and atime <= _MAX_TIME_NS):
            return _bound_time(atime), _bound_time(mtime)
        return atime, mtime

    def _hardlink(self, hdr: TarHeader, path: str) -> None:
        """Link ``path`` to the entry's link target (containerd's ``hardlinkRootPath``)."""
        head, base = rootpath.split(hdr.linkname)
        parent = self._resolve(head) if head else ""
        target = rootpath.join(parent, base) if parent else rootpath.clean(base or ".")
        if target in (".", "") or target == ".." or target.startswith("../"):
            target = ""
        if not target:
            raise IsADirectoryError(errno.EPERM, "hardlink target is the root directory", path)
        if self.overlay is not None and self.root.lstat(target) is None:
            self._copy_up(target)
        self.root.link(target, path)

    def _copy_up(self, target: str) -> None:
        """Bring a lower layer's file into the upperdir so that it can be linked to."""
        assert self.overlay is not None
        found = self.overlay.lookup(target)
        if found is None or found[0] == UPPER:
            return  # link() reports the missing target
        layer, st = found
        if stat.S_ISDIR(st.st_mode):
            return  # link() reports EPERM for directories
        parent = target.rpartition("/")[0]
        if parent:
            self._mkparent(parent)
        source = self.overlay.lower_path(layer, target)
        if stat.S_ISREG(st.st_mode):
            fd = self.root.create_file(target, stat.S_IMODE(st.st_mode) & 0o777)
            try:
                with open(source, "rb") as src:
                    while chunk := src.read(1 << 20):
                        os.write(fd, chunk)
                os.fchown(fd, st.st_uid, st.st_gid)
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
                _copy_xattrs(source, fd)
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
            return
        if stat.S_ISLNK(st.st_mode):
            self.root.symlink(os.readlink(source), target)
        else:
            self.root.mknod(target, st.st_mode, st.st_rdev)
            self.root.chmod_nofollow(target, stat.S_IMODE(st.st_mode))
        self.root.lchown(target, st.st_uid, st.st_gid)
        self.root.lutimes(target, st.st_atime_ns, st.st_mtime_ns)


def _write_all(fd: int, pieces: Iterable[memoryview]) -> None:
    for piece in pieces:
        remaining = piece
        while remaining:
            remaining = remaining[os.write(fd, remaining) :]


def _bound_time(ns: int) -> int:
    """containerd's boundTime: times before 1970 or past 2262 become the epoch."""
    return 0 if ns < 0 or ns > _MAX_TIME_NS else ns


def _host_lookup(root: str) -> rootpath.Lookup:
    """A ``rootpath.Lookup`` for a read-only parent directory (a lowerdir)."""

    def lookup(abs_path: str) -> str | None:
        path = os.path.join(root, abs_path[1:])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        return os.readlink(path) if stat.S_ISLNK(st.st_mode) else None

    return lookup


def _copy_xattrs(source: str, fd: int) -> None:
    """containerd's copyUpXAttrs: every xattr but ``trusted.*``, not overwriting any."""
    try:
        names = os.listxattr(source, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.ENODATA):
            return
        raise
    for name in names:
        if name.startswith("trusted."):
            continue
        try:
            value = os.getxattr(source, name, follow_symlinks=False)
            os.setxattr(fd, name, value, os.XATTR_CREATE)
        except OSError as err:
            if err.errno not in (errno.ENOTSUP, errno.ENODATA, errno.EEXIST):
                raise


def _target_error(name: str, err: OSError) -> TargetError:
    reason = err.strerror or str(err)
    where = f" ({_shown(err.filename)})" if err.filename and err.filename != name else ""
    return TargetError(f"tar entry {_shown(name)}: {reason}{where}")


def _shown(name: object) -> str:
    """``repr`` of a name for a message, cut in the middle when long.

    A hostile name can run to a megabyte (PAX); the message must still show the reason.
    """
    text = repr(name)
    return f"{text[:120]}...{text[-60:]}" if len(text) > 200 else text


def _device_number(major: int, minor: int) -> int:
    """The device number containerd gives mknod(2) for these header fields.

    Go's ``unix.Mkdev(uint32(major), uint32(minor))``, cut to the 32 bits the system
    call takes: 12 bits of major, 20 of minor. (``os.makedev`` takes C ints and
    overflows on fields past 2**31; glibc's mknod refuses what does not fit 32 bits.)
    """
    return (minor & 0xFF) | (major & 0xFFF) << 8 | (minor & 0xFFF00) << 12
