"""The merged tree of an image's layers, kept in memory as one small node per path.

Sans-I/O: ``Flattener`` is told the entries of each layer in order and answers, for each,
whether it added or replaced a path and how many bytes of earlier layers it removed. It
follows the changeset rules containerd's naive applier follows: an existing path is
replaced, except a directory by a directory; ``.wh.NAME`` deletes NAME and everything
under it; an opaque marker hides what earlier layers had under its directory, not what
this layer writes there, wherever the marker stands. Parent paths are resolved through
the symlinks earlier entries made (``bin -> usr/bin``), never above the root.

Every file removed from the tree is recorded as ``Waste``: bytes an earlier layer (or an
earlier entry of the same layer) carries that the flattened image does not have.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from layerdiff.errors import InvalidLayerError

#: Symlinks followed while resolving one path, as Linux's limit of nested links.
MAX_LINKS = 40

Parts = Sequence[str]


@dataclass(frozen=True, slots=True)
class Waste:
    """A file of layer ``layer`` that layer ``by`` removed (``how``: overwritten, deleted,
    hidden by an opaque directory)."""

    path: str
    size: int
    layer: int
    by: int
    how: str


class _Node:
    __slots__ = ("children", "kind", "layer", "size", "target", "touched")

    def __init__(self, kind: str, size: int, layer: int, target: str = "") -> None:
        self.kind = kind
        self.size = size
        self.layer = layer  # the layer that wrote it last
        self.touched = layer  # the last layer that wrote it or anything below it
        self.target = target  # a symlink's target
        self.children: dict[str, _Node] | None = {} if kind == "dir" else None


class Flattener:
    """The flattened state of the layers applied so far (layer numbers count from 0)."""

    def __init__(self) -> None:
        self._root = _Node("dir", 0, 0)
        #: Bytes of each layer that later entries removed.
        self.wasted: dict[int, int] = {}
        self.waste: list[Waste] = []

    def put(self, layer: int, parts: Parts, kind: str, size: int, target: str = "") -> tuple[
        bool, int
    ]:
        """Write an entry; returns (whether it replaced a path of an earlier layer, bytes
        of files it removed)."""
        if not parts:  # the root: only its metadata changes
            earlier = self._root.layer < layer
            self._root.layer = self._root.touched = layer
            return earlier, 0
        found = self._directory(parts[:-1], layer, create=True)
        assert found is not None  # created
        parent, where = found
        assert parent.children is not None
        name = parts[-1]
        old = parent.children.get(name)
        earlier = old is not None and old.layer < layer
        if old is not None and old.kind == "dir" and kind == "dir":
            old.layer = old.touched = layer  # a directory over one takes its metadata only
            return earlier, 0
        removed = 0
        if old is not None:
            removed = self._drop(old, [*where, name], layer, "overwritten")
        parent.children[name] = _Node(kind, size, layer, target)
        return earlier, removed

    def delete(self, layer: int, parts: Parts) -> int:
        """A whiteout of ``parts``: the bytes of files it removed."""
        found = self._directory(parts[:-1], layer, create=False)
        if found is None:
            return 0
        parent, where = found
        assert parent.children is not None
        old = parent.children.pop(parts[-1], None)
        return 0 if old is None else self._drop(old, [*where, parts[-1]], layer, "deleted")

    def hide(self, layer: int, parts: Parts) -> int:
        """An opaque marker in directory ``parts``: the bytes of files it hid."""
        found = self._directory(parts, layer, create=False)
        if found is None:
            return 0
        removed = 0
        todo = [found]
        while todo:
            directory, where = todo.pop()
            assert directory.children is not None
            for name, child in list(directory.children.items()):
                if child.touched != layer:
                    del directory.children[name]
                    removed += self._drop(child, [*where, name], layer, "hidden")
                elif child.kind == "dir":
                    # Written by this layer, or holding what it wrote: what lower layers
                    # left inside is hidden too.
                    todo.append((child, [*where, name]))
        return removed

    def files(self) -> Iterator[tuple[str, int]]:
        """Every regular file of the flattened tree: (path, size)."""
        for path, node in self._walk(self._root, []):
            if node.kind == "file":
                yield path, node.size

    def count(self) -> int:
        """How many paths the flattened tree holds, the root excluded."""
        return sum(1 for _ in self._walk(self._root, [])) - 1

    def _directory(self, parts: Parts, layer: int, *, create: bool) -> tuple[
        _Node, list[str]
    ] | None:
        """The directory ``parts`` names and its resolved path; with ``create``, missing
        directories are made (as the applier makes missing parents) and every directory
        on the way is marked as touched by ``layer``."""
        stack: list[tuple[_Node, str]] = [(self._root, "")]
        todo = list(reversed(parts))
        links = 0
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            node = stack[-1][0]
            assert node.children is not None
            child = node.children.get(name)
            if child is not None and child.kind == "symlink":
                links += 1
                if links > MAX_LINKS:
                    path = "/" + "/".join(parts)
                    raise InvalidLayerError(f"too many levels of symbolic links in {path}")
                if child.target.startswith("/"):
                    del stack[1:]
                todo.extend(reversed(child.target.split("/")))
                continue
            if child is None or child.kind != "dir":
                if not create:
                    return None
                if child is not None:
                    where = [n for _, n in stack[1:]]
                    self._drop(child, [*where, name], layer, "overwritten")
                child = _Node("dir", 0, layer)
                node.children[name] = child
            stack.append((child, name))
        if create:
            for node, _ in stack:
                node.touched = layer
        return stack[-1][0], [n for _, n in stack[1:]]

    def _drop(self, node: _Node, where: list[str], by: int, how: str) -> int:
        removed = 0
        for path, item in self._walk(node, where):
            if item.kind == "file" and item.size:
                removed += item.size
                self.wasted[item.layer] = self.wasted.get(item.layer, 0) + item.size
                self.waste.append(Waste(path, item.size, item.layer, by, how))
        return removed

    @staticmethod
    def _walk(node: _Node, where: list[str]) -> Iterator[tuple[str, _Node]]:
        # Iterative: a hostile layer may nest paths hundreds of thousands deep.
        todo = [(node, "/" + "/".join(where))]
        while todo:
            item, path = todo.pop()
            yield path, item
            if item.children:
                prefix = path.rstrip("/") + "/"
                todo.extend((child, prefix + name) for name, child in item.children.items())
