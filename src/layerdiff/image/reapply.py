"""Whether applying a layer again over a partial application of itself gives the tree one
application gives: the question an interrupted flat unpack must answer before resuming.

Re-applying replays the same entries in the same order, and most entries do the same
thing the second time: a file or link replaces what is there, a directory over a
directory takes its metadata, a whiteout deletes what it names (again, or nothing), an
opaque directory keeps exactly what this layer puts in it. Two things differ, because
the first pass already changed what they refer to:

- a hardlink to a file of a lower layer: the first pass may already have replaced or
  deleted that file, so the second links to another inode or to nothing;
- an entry whose path is a parent of an earlier entry of the layer: the earlier entry
  was written through whatever was at that path before (a lower layer's symlink, say),
  the second pass writes it through what the layer put there.

A layer with either (or one that cannot be read here) is not re-applied: the unpack
starts over.
"""

from __future__ import annotations

from layerdiff.archive import rootpath
from layerdiff.archive.tarstream import ChunkReader, TarReader
from layerdiff.compression import Readable, decompressed_chunks
from layerdiff.errors import LayerdiffError
from layerdiff.processors import diff_compression

_HARDLINK = "1"
_WHITEOUT_PREFIX = ".wh."
_OPAQUE = ".wh..wh..opq"


def reapplicable(stream: Readable, media_type: str | None) -> bool:
    """Whether the layer read from ``stream`` may be applied again over itself."""
    if media_type is not None:
        suffixes = media_type.partition("+")[2]
        if diff_compression(media_type) is None or suffixes not in ("", "gzip", "zstd"):
            return False  # encrypted or otherwise wrapped: not readable without its processor
    created: set[str] = set()
    parents: set[str] = set()  # proper ancestors of the paths written so far
    try:
        reader = TarReader(ChunkReader(decompressed_chunks(stream)))
        while (hdr := reader.next()) is not None:
            path = rootpath.clean("/" + hdr.name).lstrip("/")
            base = path.rpartition("/")[2]
            if base == _OPAQUE:
                continue
            if base.startswith(_WHITEOUT_PREFIX):
                path = rootpath.join(rootpath.dirname("/" + path), base[len(_WHITEOUT_PREFIX):])
                path = path.lstrip("/")
            if path in parents:
                return False
            if hdr.typeflag == _HARDLINK:
                target = rootpath.clean("/" + hdr.linkname).lstrip("/")
                if target not in created:
                    return False
            created.add(path)
            parts = path.split("/")
            parents.update("/".join(parts[:i]) for i in range(1, len(parts)))
    except LayerdiffError:
        return False
    return True
