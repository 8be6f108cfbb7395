"""Moving bytes into and out of any ``Store``: copy a stream in, write a new layer in,
read a blob back with its digest checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping

from layerdiff.compression import Readable
from layerdiff.content.local import split_digest
from layerdiff.content.store import Info, Store, Writer
from layerdiff.errors import AlreadyExistsError, CorruptLayerError, LayerdiffError
from layerdiff.oci import LABEL_UNCOMPRESSED, Descriptor

_CHUNK = 1 << 20


def unique_ref(prefix: str) -> str:
    """A fresh ingest ref, for writes no one will resume."""
    return f"{prefix}-{uuid.uuid4().hex}"


def write_blob(
    store: Store,
    ref: str,
    source: Readable,
    *,
    size: int = 0,
    digest: str = "",
    labels: Mapping[str, str] | None = None,
) -> Info:
    """Copy ``source`` into the store as one blob and commit it, verified against ``size``
    and ``digest`` when given. A blob that exists already is not written again; an ingest
    left by an earlier attempt is resumed by skipping the bytes it holds."""
    if digest:
        with contextlib.suppress(LayerdiffError):
            return store.info(digest)
    try:
        writer = store.writer(ref, total=size, expected=digest)
    except AlreadyExistsError:
        return store.info(digest)
    with _closing_on_error(writer):
        _skip(source, writer.offset)
        while chunk := source.read(_CHUNK):
            writer.write(chunk)
        try:
            return writer.commit(size, digest, labels)
        except AlreadyExistsError:
            return store.info(writer.digest())


def commit_layer(
    store: Store,
    produce: Callable[[Writer], Descriptor],
    ref: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Descriptor:
    """Have ``produce`` write a layer into an ingest, then commit it with its
    ``containerd.io/uncompressed`` label, as containerd's walking differ does: a given
    ``ref`` is truncated first; a fresh one (``ref=None``) is aborted on failure, so that
    nothing half-written is left, visible or not. A layer committed before is not written
    again; it gets the uncompressed label if it lacked it."""
    fresh = ref is None
    ref = ref or unique_ref("layerdiff-diff")
    writer = store.writer(ref)
    try:
        if writer.offset:
            writer.truncate()
        desc = produce(writer)
        all_labels = dict(labels or {})
        uncompressed = desc.annotations.get(LABEL_UNCOMPRESSED)
        if uncompressed:
            all_labels[LABEL_UNCOMPRESSED] = uncompressed
        try:
            writer.commit(desc.size, desc.digest, all_labels)
        except AlreadyExistsError:
            info = store.info(desc.digest)
            if uncompressed and LABEL_UNCOMPRESSED not in info.labels:
                labelled = Info(info.digest, info.size, info.created_at, info.updated_at,
                                {LABEL_UNCOMPRESSED: uncompressed})
                store.update(labelled, [f"labels.{LABEL_UNCOMPRESSED}"])
        return desc
    except BaseException:
        writer.close()
        if fresh:
            with contextlib.suppress(LayerdiffError):
                store.abort(ref)
        raise


class VerifiedReader:
    """Reads a blob and, at its end, checks that the bytes have the expected digest and
    size: a store's or a registry's word is not taken for it."""

    def __init__(self, source: Readable, digest: str, size: int | None = None) -> None:
        self._source = source
        self._digest = digest
        self._size = size
        algorithm = split_digest(digest)[0]
        self._hash = hashlib.new(algorithm)
        self._prefix = algorithm + ":"
        self._read = 0

    def read(self, size: int = -1, /) -> bytes:
        """The next bytes; ``CorruptLayerError`` at the end if they are not the blob."""
        data = self._source.read(size)
        self._hash.update(data)
        self._read += len(data)
        if self._size is not None and self._read > self._size:
            raise CorruptLayerError(
                f"blob {self._digest} is longer than its expected {self._size} bytes"
            )
        if not data and size != 0:
            self._check()
        return data

    def _check(self) -> None:
        actual = self._prefix + self._hash.hexdigest()
        if self._size is not None and self._read != self._size:
            raise CorruptLayerError(
                f"blob {self._digest} has {self._read} bytes, expected {self._size}"
            )
        if actual != self._digest:
            raise CorruptLayerError(f"blob has digest {actual}, expected {self._digest}")


def _skip(source: Readable, count: int) -> None:
    while count > 0:
        chunk = source.read(min(count, _CHUNK))
        if not chunk:
            raise CorruptLayerError(f"the input ended before the {count} bytes already ingested")
        count -= len(chunk)


@contextlib.contextmanager
def _closing_on_error(writer: Writer) -> Iterator[None]:
    try:
        yield
    except BaseException:
        writer.close()
        raise
