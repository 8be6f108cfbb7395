"""Reading an image's layer blob with its digest checked, and naming the layer in errors:
shared by ``unpack`` and ``inspect``, which must report a bad layer the same way."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from layerdiff.compression import Readable
from layerdiff.content.ingest import VerifiedReader
from layerdiff.errors import (
    CorruptLayerError,
    InvalidLayerError,
    LayerdiffError,
    UnsupportedCompressionError,
)
from layerdiff.image.source import ImageSource, Layer

_CHUNK = 1 << 20


@contextlib.contextmanager
def layer_blob(source: ImageSource, layer: Layer) -> Iterator[Readable]:
    """The layer's blob, its digest and size checked when the manifest gives them.

    A ``LayerdiffError`` raised inside is re-raised naming the layer; when the blob broke
    its compression or tar, the rest is read first, so that a blob that is not the one
    the manifest names is reported as that, with both digests.
    """
    stream = source.open_layer(layer)
    try:
        reader: Readable = stream
        verified = layer.digest is not None and _verifies(stream, layer.digest)
        if layer.digest and not verified:
            reader, verified = VerifiedReader(stream, layer.digest, layer.size), True
        try:
            yield reader
        except (CorruptLayerError, InvalidLayerError, UnsupportedCompressionError) as err:
            mismatch = blob_mismatch(reader) if verified else None
            raise in_layer(mismatch or err, layer) from err
        except LayerdiffError as err:
            raise in_layer(err, layer) from err
    finally:
        stream.close()


def _verifies(stream: object, digest: str) -> bool:
    """Whether ``stream`` already checks ``digest`` and the size itself, as a registry
    download does (``registry.blob.BlobReader``): hashing the bytes twice costs ~1 s/GiB."""
    return getattr(stream, "verified_digest", None) == digest


def check_diff_id(layer: Layer, diff_id: str) -> None:
    """``CorruptLayerError`` unless the layer's uncompressed digest is the config's."""
    if diff_id != layer.diff_id:
        raise CorruptLayerError(
            f"{layer.describe()}: its diffID is {diff_id}, "
            f"the image config expects {layer.diff_id}"
        )


def blob_mismatch(reader: Readable) -> CorruptLayerError | None:
    """Read ``reader`` to its end: the error naming both digests if the blob is not the
    expected one, else ``None`` (a read error too: the caller's error stands)."""
    try:
        while reader.read(_CHUNK):
            pass
    except CorruptLayerError as err:
        return err
    except LayerdiffError:
        return None
    return None


def in_layer(err: LayerdiffError, layer: Layer) -> LayerdiffError:
    """``err`` with the layer named in front of its message."""
    message = f"{layer.describe()}: {err}"
    try:
        return type(err)(message)
    except TypeError:  # a subclass with another signature
        return LayerdiffError(message)
