"""File-system operations confined to one root directory, done through directory fds.

The applier resolves a name to a path inside the root (``rootpath``) and then acts on
it. Acting through a path string would follow whatever symlink sits there *now*, which a
concurrent writer could have swapped in since the check (containerd CVE-2025-47290,
moby CVE-2018-15664). So every operation here goes through the file descriptor of the
parent directory, opened with ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` — a
path with a symlink in it fails instead of being followed — and then acts on one name
relative to that fd with the ``*at`` calls, never following a final symlink.

Opened directory fds are cached (most entries of a layer share a parent), as is the set
of directories known to be real directories, which lets path resolution skip one
``lstat`` per component. Both are invalidated for a subtree whenever it is removed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from layerdiff.archive import rootpath

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW
_O_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every architecture (unified syscall table)

_FD_CACHE_SIZE = 128
#: Linux's PATH_MAX (bytes, with the final NUL): the longest path a system call takes.
_PATH_MAX = 4096


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_HAVE_OPENAT2 = True


def _openat2_beneath(dirfd: int, path: str) -> int:
    """Open directory ``path`` under ``dirfd``; fail rather than follow any symlink."""
    global _HAVE_OPENAT2  # noqa: PLW0603 - a one-way switch when the kernel lacks openat2
    if _HAVE_OPENAT2:
        how = _OpenHow(_O_DIR, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
        fd = _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.ENOSYS:
            raise OSError(err, os.strerror(err), path)
        _HAVE_OPENAT2 = False
    # Older kernels: one component at a time, each opened with O_NOFOLLOW.
    fd = os.dup(dirfd)
    try:
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise OSError(errno.EXDEV, "path leaves the root", path)
            nxt = os.open(part, _O_DIR, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def in_resolved_parent(rel: str, lookup: rootpath.Lookup, links: rootpath.LinkCount) -> str:
    """``rel`` with the symlinks before its last name followed, inside the root.

    continuity's walk ``lstat``s paths whose parent may still hold a symlink (a link's
    target that passes through another link) and lets the kernel follow it. The kernel
    would follow it on the host; this follows it inside the root, as every other link,
    counting towards the same limit as the enclosing resolution (links that expand
    exponentially would otherwise take exponential time).
    """
    parent, _, name = rel.rpartition("/")
    real_parent = rootpath.root_path(parent, lookup, links)
    return f"{real_parent}/{name}" if real_parent else name


def remove_tree(parent_fd: int, name: str) -> None:
    """Remove directory ``name`` of ``parent_fd`` and all it holds, never following a link.

    ``shutil.rmtree`` in Python 3.11 recurses once per level, so a layer's tree a few
    thousand levels deep (within PATH_MAX) would exhaust the stack. This walks down with
    one open fd at a time and climbs back through ``..``, checking that it lands in the
    directory it came from.
    """
    fd = os.open(name, _O_DIR, dir_fd=parent_fd)
    # One frame per level below ``name``: (its name, subdirectories still to remove,
    # the (st_dev, st_ino) of the directory holding it).
    frames: list[tuple[str, list[str], tuple[int, int]]] = []
    pending = _remove_non_dirs(fd)
    try:
        while True:
            if pending:
                child = pending.pop()
                st = os.fstat(fd)
                child_fd = os.open(child, _O_DIR, dir_fd=fd)
                frames.append((child, pending, (st.st_dev, st.st_ino)))
                os.close(fd)
                fd = child_fd
                pending = _remove_non_dirs(fd)
                continue
            if not frames:
                break
            done, pending, parent_id = frames.pop()
            parent = os.open("..", _O_DIR, dir_fd=fd)
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != parent_id:
                raise OSError(errno.ESTALE, "directory moved while it was being removed", done)
            os.rmdir(done, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def _remove_non_dirs(fd: int) -> list[str]:
    """Unlink every entry of directory ``fd`` but its subdirectories; return their names."""
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    return subdirs


def is_whiteout(st: os.stat_result) -> bool:
    """Whether ``st`` is an overlayfs whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _refuse_too_long(rel: str) -> None:
    """ENAMETOOLONG for a path of PATH_MAX bytes or more (cheap for short ones)."""
    if len(rel) >= _PATH_MAX // 4 and len(os.fsencode(rel)) >= _PATH_MAX:
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), rel[:64] + "...")


class FsRoot:
    """A directory that operations are confined to. Paths are relative, ``""`` = the root."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # The root itself may be reached through a symlink (the caller's choice); only
        # what lies inside it is confined.
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dir_fds: dict[str, int] = {"": self.fd}
        self._known_dirs: set[str] = {""}
        #: Links followed by the resolution in progress (see ``in_resolved_parent``).
        self.links = rootpath.LinkCount()

    def close(self) -> None:
        """Close every fd this root holds."""
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()

    # -- directory fds and resolution caches -------------------------------------------

    def dir_fd(self, rel: str) -> int:
        """A cached fd of directory ``rel`` (opened without following any symlink)."""
        fd = self._dir_fds.get(rel)
        if fd is not None:
            return fd
        fd = _openat2_beneath(self.fd, rel)
        if len(self._dir_fds) >= _FD_CACHE_SIZE:
            # Evict the oldest entry other than the root itself.
            oldest = next(k for k in self._dir_fds if k)
            os.close(self._dir_fds.pop(oldest))
        self._dir_fds[rel] = fd
        return fd

    def mark_dir(self, rel: str) -> None:
        """Record that ``rel`` and so its ancestors are real directories (not symlinks).

        Keeping the set closed under ancestors lets ``forget`` skip the scan for any
        path that is not itself a known directory.
        """
        while rel not in self._known_dirs:
            self._known_dirs.add(rel)
            rel = rel.rpartition("/")[0]

    def is_known_dir(self, rel: str) -> bool:
        """Whether ``rel`` was recorded as a real directory and not removed since."""
        return rel in self._known_dirs

    def forget(self, rel: str) -> None:
        """Drop cached knowledge of ``rel`` and everything below it (it is going away)."""
        prefix = rel + "/"
        if rel in self._known_dirs:
            self._known_dirs = {
                d for d in self._known_dirs if d != rel and not d.startswith(prefix)
            }
        for key in [k for k in self._dir_fds if k == rel or k.startswith(prefix)]:
            os.close(self._dir_fds.pop(key))

    def _parent(self, rel: str) -> tuple[int, str]:
        # A cached parent fd would reach paths longer than PATH_MAX that a lookup from
        # the root refuses: refuse them always, so that the outcome does not depend on
        # what the cache holds (containerd, which uses whole paths, refuses them too).
        _refuse_too_long(rel)
        parent, _, name = rel.rpartition("/")
        return self.dir_fd(parent), name

    # -- queries ------------------------------------------------------------------------

    def lstat(self, rel: str) -> os.stat_result | None:
        """``lstat`` of ``rel``; ``None`` if it does not exist (ENOTDIR propagates)."""
        if not rel:
            return os.fstat(self.fd)
        try:
            fd, name = self._parent(rel)
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def lookup_symlink(self, abs_path: str) -> str | None:
        """``rootpath.Lookup`` over this root: the target if ``abs_path`` is a symlink."""
        rel = abs_path[1:]
        if rel in self._known_dirs:
            return None
        try:
            st = self.lstat(rel)
        except OSError as err:
            if err.errno != errno.ELOOP:
                raise
            rel = in_resolved_parent(rel, self.lookup_symlink, self.links)
            st = self.lstat(rel)
        if st is None or not stat.S_ISLNK(st.st_mode):
            return None
        return self.readlink(rel)

    def readlink(self, rel: str) -> str:
        """The target of symlink ``rel``."""
        fd, name = self._parent(rel)
        return os.readlink(name, dir_fd=fd)

    def resolve(self, path: str, lookup: rootpath.Lookup | None = None) -> str:
        """``fs.RootPath`` of ``path`` in this root, with a fast path for known dirs.

        ``lookup`` replaces this root's own symlink lookup (an overlay's merged view).
        """
        if path in self._known_dirs:
            return path
        self.links = rootpath.LinkCount()
        return rootpath.root_path(path, lookup or self.lookup_symlink, self.links)

    def listdir(self, rel: str) -> list[str]:
        """The names in directory ``rel``, sorted as Go's ``filepath.Walk`` visits them."""
        fd = os.open(".", _O_DIR, dir_fd=self.dir_fd(rel))
        try:
            return sorted(os.listdir(fd), key=os.fsencode)
        finally:
            os.close(fd)

    def getxattr(self, rel: str, key: str) -> bytes | None:
        """Extended attribute ``key`` of ``rel`` (not following symlinks); None if unset."""
        try:
            target = self._xattr_target(rel)
            if isinstance(target, int):
                return os.getxattr(target, key)
            return os.getxattr(target, key, follow_symlinks=False)
        except OSError as err:
            if err.errno in (errno.ENODATA, errno.ENOTSUP):
                return None
            raise

    def _xattr_target(self, rel: str) -> str | int:
        """What the xattr calls (which take no dir_fd) should act on for ``rel``.

        For the root, its fd. Otherwise ``/proc/self/fd/N/NAME``: the kernel resolves
        the magic link to the parent directory itself, then looks NAME up in it without
        following it; nothing on the way can be a symlink placed by a layer.
        """
        if not rel:
            return self.fd
        fd, name = self._parent(rel)
        return f"/proc/self/fd/{fd}/{name}"

    # -- changes ------------------------------------------------------------------------

    def remove_all(self, rel: str) -> None:
        """Go's ``os.RemoveAll``: remove ``rel`` and its contents; a missing path is fine."""
        self.forget(rel)
        st = self.lstat(rel)
        if st is None:
            return
        fd, name = self._parent(rel)
        if stat.S_ISDIR(st.st_mode):
            remove_tree(fd, name)
        else:
            os.unlink(name, dir_fd=fd)

    def mkdir(self, rel: str, mode: int) -> None:
        """Create directory ``rel``."""
        fd, name = self._parent(rel)
        os.mkdir(name, mode, dir_fd=fd)

    def open_dir(self, rel: str) -> int:
        """A new fd for directory ``rel`` (caller closes); never follows a symlink."""
        fd, name = self._parent(rel)
        return os.open(name, _O_DIR, dir_fd=fd) if rel else os.dup(self.fd)

    def create_file(self, rel: str, mode: int) -> int:
        """Create regular file ``rel`` (which must not exist) and return a writable fd."""
        fd, name = self._parent(rel)
        return os.open(name, _O_NEW_FILE, mode, dir_fd=fd)

    def create_in_known_dir(self, rel: str, mode: int) -> int | None:
        """``create_file`` if ``rel``'s parent is a known directory, else ``None``.

        The applier's hot path: the known-parent check, the length refusal and the open
        in one call.
        """
        parent, _, name = rel.rpartition("/")
        if parent not in self._known_dirs:
            return None
        _refuse_too_long(rel)
        return os.open(name, _O_NEW_FILE, mode, dir_fd=self.dir_fd(parent))

    def open_path(self, rel: str) -> int:
        """An ``O_PATH`` fd of ``rel`` itself (a symlink is not followed)."""
        fd, name = self._parent(rel)
        return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)

    def symlink(self, target: str, rel: str) -> None:
        """Create symlink ``rel`` pointing at ``target``."""
        fd, name = self._parent(rel)
        os.symlink(target, name, dir_fd=fd)

    def mknod(self, rel: str, mode: int, device: int) -> None:
        """Create a device node or fifo ``rel``."""
        fd, name = self._parent(rel)
        os.mknod(name, mode, device, dir_fd=fd)

    def link(self, src: str, dst: str) -> None:
        """Hard-link ``dst`` to ``src`` (a symlink at ``src`` is linked, not followed)."""
        src_fd, src_name = self._parent(src)
        dst_fd, dst_name = self._parent(dst)
        os.link(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd, follow_symlinks=False)

    def lchown(self, rel: str, uid: int, gid: int) -> None:
        """Change the owner of ``rel`` itself."""
        fd, name = self._parent(rel)
        os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)

    def chmod_nofollow(self, rel: str, mode: int) -> None:
        """Change the mode of ``rel`` unless it is a symlink (Linux has no lchmod)."""
        pfd = self.open_path(rel)
        try:
            if not stat.S_ISLNK(os.fstat(pfd).st_mode):
                os.chmod(f"/proc/self/fd/{pfd}", mode)
        finally:
            os.close(pfd)

    def lsetxattr(self, rel: str, key: str, value: bytes, flags: int = 0) -> None:
        """Set an extended attribute on ``rel`` itself."""
        target = self._xattr_target(rel)
        if isinstance(target, int):
            os.setxattr(target, key, value, flags)
        else:
            os.setxattr(target, key, value, flags, follow_symlinks=False)

    def lutimes(self, rel: str, atime_ns: int, mtime_ns: int) -> None:
        """Set the times of ``rel`` itself."""
        fd, name = self._parent(rel)
        os.utime(name, ns=(atime_ns, mtime_ns), dir_fd=fd, follow_symlinks=False)

    def adopt_dir_fd(self, rel: str, fd: int) -> None:
        """Cache ``fd`` (an open directory ``rel``) instead of closing it."""
        old = self._dir_fds.pop(rel, None)
        if old is not None:
            os.close(old)
        if len(self._dir_fds) >= _FD_CACHE_SIZE:
            oldest = next(k for k in self._dir_fds if k)
            os.close(self._dir_fds.pop(oldest))
        self._dir_fds[rel] = fd
