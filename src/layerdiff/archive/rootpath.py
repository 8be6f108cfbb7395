"""Resolving paths inside a root as if the root were ``/``.

This is continuity's ``fs.RootPath``, which containerd uses for every name in a layer:
symlinks met along the way are followed (absolute targets restart at the root, ``..``
never climbs above it), components that do not exist are kept as they are, and more
than 255 links is an error. The exact order in which ``..`` and symlinks are applied
matters for a drop-in applier, so the algorithm is followed step by step, including its
use of Go's lexical ``path.Clean`` on names and link targets.

Paths here are Go-style strings (``/``-separated); results are relative to the root,
``""`` meaning the root itself. The file system is reached only through a ``Lookup``
callback, so the same algorithm serves a plain directory and an overlay's merged view.
"""

from __future__ import annotations

from collections.abc import Callable

from layerdiff.errors import InvalidLayerError

#: Lookup(path) -> the symlink's target if ``path`` (absolute, cleaned, inside the root)
#: is a symlink, else ``None`` (also when it does not exist). Other errors propagate.
Lookup = Callable[[str], str | None]

MAX_LINKS = 255


def clean(path: str) -> str:
    """Go's ``path.Clean``: lexical clean-up; ``""`` becomes ``"."``."""
    if not path:
        return "."
    # Fast path for names that are clean already (most of a layer's): without an empty,
    # "." or ".." component there is nothing to change. The test is conservative: names
    # such as ".profile" take the full path.
    if "//" not in path and "/." not in path and path[0] != "." and path[-1] != "/":
        return path
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def split(path: str) -> tuple[str, str]:
    """Go's ``path.Split``: (everything up to and including the last ``/``, the rest)."""
    i = path.rfind("/")
    return path[: i + 1], path[i + 1 :]


def join(*elems: str) -> str:
    """Go's ``path.Join``: join the non-empty elements and clean; ``""`` if all empty."""
    parts = [e for e in elems if e]
    return clean("/".join(parts)) if parts else ""


def dirname(path: str) -> str:
    """Go's ``path.Dir``."""
    return clean(split(path)[0])


class LinkCount:
    """Links followed so far; shared by nested resolutions so that they add up."""

    def __init__(self) -> None:
        self.value = 0


class _Walker:
    def __init__(self, lookup: Lookup, links: LinkCount) -> None:
        self.lookup = lookup
        self.count = links

    @property
    def links(self) -> int:
        return self.count.value

    def walk_link(self, path: str) -> tuple[str, bool]:
        if self.count.value > MAX_LINKS:
            raise InvalidLayerError("too many levels of symbolic links")
        path = join("/", path)
        if path == "/":
            return path, False
        target = self.lookup(path)
        if target is None:
            return path, False
        if not target.startswith("/"):
            target = join(dirname(path), target)
        self.count.value += 1
        return target, True

    def walk_links(self, path: str) -> str:
        # continuity recurses on path.Split(path); unrolled into a loop over components
        # (same steps, same order) so that deep paths cannot exhaust Python's stack.
        # A link's target is always absolute here (relative ones are joined to the
        # link's directory), so it replaces everything walked so far.
        current = "/"
        for part in path.split("/"):
            if part:
                current = self.walk_link(join(current, part))[0]
        return current


def root_path(path: str, lookup: Lookup, links: LinkCount | None = None) -> str:
    """Resolve ``path`` inside the root; return it relative to the root (``""`` = root).

    ``links`` carries the count of links already followed by an enclosing resolution.
    """
    if not path:
        return ""
    walker = _Walker(lookup, links or LinkCount())
    while True:
        before = walker.links
        path = walker.walk_links(path)
        if walker.links == before:
            return join("/", path)[1:]
