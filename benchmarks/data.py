"""The benchmark's data, made reproducibly under a cache folder.

Four layers, each as ``.tar``, ``.tar.gz`` (GNU ``gzip -6 -n``: the level Go's gzip and
so containerd and docker write by default) and ``.tar.zst`` (``zstd -3``, zstd's default
and containerd's):

- ``rootfs``: a Debian minbase root file system, ``debootstrap --variant=minbase
  <this machine's release>`` from Debian's mirror (or, for quick tests, ``--rootfs
  synthetic``: a small seeded tree shaped like one), packed by GNU tar with sorted names,
  fixed times and numeric owners. GNU tar, not layerdiff's own ``diff_trees``, so that
  the contender does not also write the data it is measured on.
- ``small``: 60k small files (seeded: sizes log-normal around 1.5 KiB, text-like,
  directories up to 4 deep, a few executables and symlinks).
- ``large``: eight files of ~1 GiB in all: 3/8 random (incompressible), 3/8 text-like,
  1/4 zeros.
- ``delta``: a layer over ``rootfs`` that changes ~1% of its files: half rewritten,
  a quarter deleted (whiteouts), a quarter added next to them; plus one directory
  deleted and one made opaque (``.wh..wh..opq``) with new contents.

The synthetic layers are written by Python's tarfile (PAX) from ``random.Random(seed)``:
same seed, scale and rootfs give the same bytes. ``--scale`` multiplies the sizes of
``small`` and ``large`` (``--scale 0.1`` for a quick run); ``rootfs`` and ``delta`` do
not scale. Every file is built once, under a temporary name then renamed.

    python -m benchmarks.data [--cache DIR] [--scale S] [--rootfs debootstrap|synthetic]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import stat
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import DEFAULT_CACHE, TOOLS_DIR, BenchError, is_root, run, system_tool

DATASETS = ("rootfs", "small", "large", "delta")
SUFFIXES = ("tar", "tar.gz", "tar.zst")
ROOTFS_KINDS = ("debootstrap", "synthetic")
MIRROR = "http://deb.debian.org/debian"
FIXED_MTIME = 1_700_000_000  # every time in every layer: the bytes do not depend on today
SEED = 8
SMALL_FILES = 60_000
LARGE_BYTES = 1 << 30
DELTA_SHARE = 0.01
# Bumped when the generators change, so that a cache made by an older version is rebuilt.
FORMAT = 1
_MiB = 1 << 20


@dataclass(frozen=True)
class DataSet:
    """One layer of the benchmark: its blobs by suffix, and what it holds."""

    name: str
    blobs: dict[str, Path]
    entries: int
    tar_bytes: int
    base: str | None  # the data set it applies over (delta: rootfs), None for an empty dir

    def blob(self, suffix: str) -> Path:
        """The blob of this layer with this compression suffix."""
        return self.blobs[suffix]


def prepare(
    cache: Path = DEFAULT_CACHE,
    scale: float = 1.0,
    rootfs: str = "debootstrap",
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> dict[str, DataSet]:
    """Build (once) and return every data set, by name."""
    if scale <= 0:
        raise BenchError(f"scale must be positive, not {scale}")
    if rootfs not in ROOTFS_KINDS:
        raise BenchError(f"rootfs must be one of {ROOTFS_KINDS}, not {rootfs!r}")
    cache.mkdir(parents=True, exist_ok=True)
    tree = cache / f"rootfs-{rootfs}"
    if not tree.is_dir():
        log(f"building the {rootfs} root file system in {tree}")
        (_debootstrap if rootfs == "debootstrap" else _synthetic_rootfs)(tree)
    folder = cache / f"layers-v{FORMAT}-{rootfs}-s{scale:g}"
    folder.mkdir(exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest: dict[str, dict[str, int]] = (
        json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    )
    writers: dict[str, Callable[[tarfile.TarFile], None]] = {
        "small": lambda out: _small_layer(out, round(SMALL_FILES * scale)),
        "large": lambda out: _large_layer(out, LARGE_BYTES * scale),
        "delta": lambda out: _delta_layer(out, tree),
    }
    sets = {}
    for name in DATASETS:
        tar = folder / f"{name}.tar"
        if not tar.exists() or name not in manifest:
            log(f"writing {tar}")
            temp = tar.with_suffix(".tmp")
            if name == "rootfs":
                _pack_tree(tree, temp, synthetic=rootfs == "synthetic")
            else:
                with tarfile.open(temp, "w", format=tarfile.PAX_FORMAT) as out:
                    writers[name](out)
            temp.rename(tar)
            for suffix in SUFFIXES[1:]:
                (folder / f"{name}.{suffix}").unlink(missing_ok=True)
            manifest[name] = {"entries": _count_entries(tar), "tar_bytes": tar.stat().st_size}
            manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        blobs = {"tar": tar}
        for suffix, command in (("tar.gz", ["gzip", "-6", "-n", "-c"]),
                                ("tar.zst", ["zstd", "-3", "-T0", "-q", "-c"])):
            blob = folder / f"{name}.{suffix}"
            if not blob.exists():
                log(f"writing {blob}")
                temp = blob.with_suffix(".tmp")
                with open(tar, "rb") as source, open(temp, "wb") as sink:
                    run([system_tool(command[0]), *command[1:]], stdin=source, stdout=sink)
                temp.rename(blob)
            blobs[suffix] = blob
        sets[name] = DataSet(name, blobs, manifest[name]["entries"],
                             manifest[name]["tar_bytes"], "rootfs" if name == "delta" else None)
    return sets


def host_release() -> str:
    """This machine's Debian release (its codename), which debootstrap installs."""
    with open("/etc/os-release") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if key == "VERSION_CODENAME" and value:
                return value.strip('"')
    raise BenchError("/etc/os-release names no VERSION_CODENAME: is this Debian?")


def _debootstrap(tree: Path) -> None:
    if not is_root():
        raise BenchError("debootstrap needs root (or use --rootfs synthetic)")
    env = dict(os.environ)
    try:
        debootstrap = system_tool("debootstrap")
    except BenchError:  # fetched privately, run from its own folder
        run(["bash", str(Path(__file__).parent.parent / ".ci/fetch-bench-tools")])
        debootstrap = str(TOOLS_DIR / "root/usr/sbin/debootstrap")
        env["DEBOOTSTRAP_DIR"] = str(TOOLS_DIR / "root/usr/share/debootstrap")
    temp = tree.with_name(tree.name + ".tmp")
    run([system_tool("rm"), "-rf", "--one-file-system", str(temp)])
    run([debootstrap, "--variant=minbase", host_release(), str(temp), MIRROR], env=env)
    temp.rename(tree)


def _pack_tree(tree: Path, out: Path, *, synthetic: bool) -> None:
    owner = ["--owner=0", "--group=0"] if synthetic else []
    run([
        system_tool("tar"), "--create", "--file", str(out), "--format=posix",
        # No PID or time in the names or contents of PAX headers: reproducible bytes.
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
        "--sort=name", f"--mtime=@{FIXED_MTIME}", "--numeric-owner", *owner,
        "--xattrs", "--xattrs-include=*", "-C", str(tree), "--", *sorted(os.listdir(tree)),
    ])


def _count_entries(tar: Path) -> int:
    with tarfile.open(tar) as archive:
        return sum(1 for _ in archive)


class _Bytes:
    """A read-only stream of ``size`` generated bytes, for tarfile.addfile."""

    def __init__(self, size: int, chunk: Callable[[int], bytes]) -> None:
        self.left = size
        self.chunk = chunk

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        parts = []
        while n > 0:
            part = self.chunk(min(n, 4 * _MiB))
            parts.append(part)
            n -= len(part)
            self.left -= len(part)
        return b"".join(parts)


class _Text:
    """Text-like bytes: a seeded pool of words and lines, read at seeded offsets."""

    def __init__(self, rng: random.Random, pool_bytes: int = 8 * _MiB) -> None:
        letters = "abcdefghijklmnopqrstuvwxyz"
        words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(3000)]
        lines = []
        size = 0
        while size < pool_bytes:
            line = " ".join(rng.choices(words, k=rng.randint(3, 14))) + "\n"
            lines.append(line)
            size += len(line)
        self.pool = "".join(lines).encode()
        self.rng = rng

    def take(self, n: int) -> bytes:
        """``n`` bytes from a random place of the pool (wrapping)."""
        start = self.rng.randrange(len(self.pool))
        data = self.pool[start:start + n]
        while len(data) < n:
            data += self.pool[: n - len(data)]
        return data

    def stream(self) -> Callable[[int], bytes]:
        """A chunk function reading the pool on from a random place."""
        position = self.rng.randrange(len(self.pool))

        def chunk(n: int) -> bytes:
            nonlocal position
            data = self.pool[position:position + n]
            position = (position + len(data)) % len(self.pool)
            return data

        return chunk


def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0) -> (
        tarfile.TarInfo):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = FIXED_MTIME
    info.uname = info.gname = ""
    return info


def _add_file(out: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    out.addfile(_info(name, mode=mode, size=len(data)), _Bytes(len(data), _slicer(data)))


def _slicer(data: bytes) -> Callable[[int], bytes]:
    view = memoryview(data)
    position = 0

    def chunk(n: int) -> bytes:
        nonlocal position
        part = bytes(view[position:position + n])
        position += len(part)
        return part

    return chunk


def _name(rng: random.Random) -> str:
    stem = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789_", k=rng.randint(3, 12)))
    return stem + rng.choice(["", ".py", ".js", ".json", ".txt", ".h", ".c", ".md", ".so"])


def _small_layer(out: tarfile.TarFile, files: int) -> None:
    rng = random.Random(SEED)
    text = _Text(rng)
    top = "srv/app"
    dirs = [top]
    for _ in range(max(1, files // 30)):
        parent = rng.choice(dirs)
        if parent.count("/") - top.count("/") < 4:
            dirs.append(f"{parent}/{_name(rng).partition('.')[0]}")
    entries: dict[str, tuple[str, int, str]] = {}  # name -> (kind, mode, target)
    for directory in dirs:
        entries[directory] = ("dir", 0o755, "")
    while len(entries) < len(dirs) + files:
        name = f"{rng.choice(dirs)}/{_name(rng)}"
        if name in entries:
            continue
        roll = rng.random()
        if roll < 0.02:
            entries[name] = ("symlink", 0o777, _name(rng))
        else:
            entries[name] = ("file", 0o755 if roll < 0.07 else 0o644, "")
    for parent in ("srv",):
        out.addfile(_info(parent, tarfile.DIRTYPE, 0o755))
    for name in sorted(entries):
        kind, mode, target = entries[name]
        if kind == "dir":
            out.addfile(_info(name, tarfile.DIRTYPE, mode))
        elif kind == "symlink":
            info = _info(name, tarfile.SYMTYPE, mode)
            info.linkname = target
            out.addfile(info)
        else:
            size = min(256 << 10, int(rng.lognormvariate(math.log(1500), 1.2)))
            _add_file(out, name, text.take(size), mode)


def _large_layer(out: tarfile.TarFile, total: float) -> None:
    rng = random.Random(SEED + 1)
    text = _Text(rng)
    zero = bytes(4 * _MiB)
    shares = [("random", 3 / 16), ("random", 2 / 16), ("random", 1 / 16),
              ("text", 3 / 16), ("text", 2 / 16), ("text", 1 / 16),
              ("zeros", 3 / 16), ("zeros", 1 / 16)]
    for directory in ("opt", "opt/big"):
        out.addfile(_info(directory, tarfile.DIRTYPE, 0o755))
    for i, (kind, share) in enumerate(shares):
        size = int(total * share) // 4096 * 4096
        chunk: Callable[[int], bytes]
        if kind == "random":
            chunk = rng.randbytes
        elif kind == "text":
            chunk = text.stream()
        else:
            def chunk(n: int) -> bytes:
                return zero[:n]
        out.addfile(_info(f"opt/big/{i}.{kind}", size=size), _Bytes(size, chunk))


def _walk(tree: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every path under tree (relative, sorted), with its lstat."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(tree / rel if rel else tree) as it:
            children = sorted(it, key=lambda e: e.name, reverse=True)
        for entry in children:
            path = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)


def _delta_layer(out: tarfile.TarFile, tree: Path) -> None:
    rng = random.Random(SEED + 2)
    text = _Text(rng, 1 * _MiB)
    everything = dict(_walk(tree))
    children: dict[str, list[str]] = {}
    for path in everything:
        children.setdefault(path.rpartition("/")[0], []).append(path)
    # Two small directories away from the rest: one deleted, one made opaque.
    small_dirs = sorted(d for d, c in children.items()
                        if d and 2 <= len(c) <= 30 and all(stat.S_ISREG(everything[p].st_mode)
                                                           for p in c))
    if len(small_dirs) < 2:
        raise BenchError(f"{tree} has too few small directories for the delta layer")
    deleted_dir, opaque_dir = rng.sample(small_dirs, 2)
    spared = (deleted_dir + "/", opaque_dir + "/")
    files = sorted(p for p, st in everything.items()
                   if stat.S_ISREG(st.st_mode) and not p.startswith(spared))
    chosen = rng.sample(files, max(4, round(len(files) * DELTA_SHARE)))
    entries: dict[str, tuple[bytes, int, bytes]] = {}  # name -> (type, mode, data)
    for n, path in enumerate(chosen):
        directory, _, name = path.rpartition("/")
        prefix = f"{directory}/" if directory else ""
        if n % 4 < 2:
            size = max(16, everything[path].st_size + rng.randint(-64, 64))
            entries[path] = (tarfile.REGTYPE, stat.S_IMODE(everything[path].st_mode),
                             text.take(size))
        elif n % 4 == 2:
            entries[f"{prefix}.wh.{name}"] = (tarfile.REGTYPE, 0o644, b"")
        else:
            entries[f"{prefix}new-{name}"] = (tarfile.REGTYPE, 0o644, text.take(2000))
    parent, _, name = deleted_dir.rpartition("/")
    entries[f"{parent}/.wh.{name}" if parent else f".wh.{name}"] = (tarfile.REGTYPE, 0o644, b"")
    entries[f"{opaque_dir}/.wh..wh..opq"] = (tarfile.REGTYPE, 0o644, b"")
    entries[opaque_dir] = (tarfile.DIRTYPE, 0, b"")
    for i in range(3):
        entries[f"{opaque_dir}/replaced-{i}"] = (tarfile.REGTYPE, 0o644, text.take(3000))
    # Every entry's parents, with the root file system's metadata, as image builders write.
    for path in list(entries):
        parent = path.rpartition("/")[0]
        while parent:
            entries.setdefault(parent, (tarfile.DIRTYPE, 0, b""))
            parent = parent.rpartition("/")[0]
    for name in sorted(entries):
        kind, mode, data = entries[name]
        st = everything.get(name)
        info = _info(name, kind, mode or (stat.S_IMODE(st.st_mode) if st else 0o755), len(data))
        if st is not None:
            info.uid, info.gid = st.st_uid, st.st_gid
        if kind == tarfile.DIRTYPE:
            out.addfile(info)
        else:
            out.addfile(info, _Bytes(len(data), _slicer(data)))


def _synthetic_rootfs(tree: Path) -> None:
    """A small seeded tree shaped like a root file system (no root needed)."""
    rng = random.Random(SEED + 3)
    text = _Text(rng, _MiB)
    temp = tree.with_name(tree.name + ".tmp")
    run([system_tool("rm"), "-rf", str(temp)])
    for directory in ("etc", "usr/bin", "usr/lib", "usr/share/doc", "var/lib", "tmp"):
        (temp / directory).mkdir(parents=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("sbin", "usr/bin")):
        (temp / link).symlink_to(target)
    for i in range(40):
        (temp / f"usr/bin/tool{i}").write_bytes(rng.randbytes(rng.randint(1000, 30000)))
        (temp / f"usr/bin/tool{i}").chmod(0o755)
        (temp / f"usr/lib/lib{i}.so").write_bytes(rng.randbytes(rng.randint(1000, 50000)))
        (temp / f"etc/conf{i}").write_bytes(text.take(rng.randint(50, 2000)))
    for p in range(20):
        doc = temp / f"usr/share/doc/pkg{p}"
        doc.mkdir()
        for name in ("copyright", "changelog", "README"):
            (doc / name).write_bytes(text.take(rng.randint(200, 5000)))
    temp.rename(tree)


def main(argv: list[str] | None = None) -> int:
    """Build the data sets and print where they are."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rootfs", choices=ROOTFS_KINDS, default="debootstrap")
    args = parser.parse_args(argv)
    try:
        sets = prepare(args.cache, args.scale, args.rootfs)
    except BenchError as err:
        print(f"data: error: {err}", file=sys.stderr)
        return 1
    for data in sets.values():
        sizes = ", ".join(f"{s} {p.stat().st_size / _MiB:.1f} MiB" for s, p in data.blobs.items())
        print(f"{data.name}: {data.entries} entries; {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
