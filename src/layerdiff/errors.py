"""One hierarchy for every error layerdiff reports.

Each class names a kind of failure, not a place in the code; the CLI prints ``str(error)``
as a one-line message, and the gRPC server maps the classes to status codes in one table.
"""

from __future__ import annotations


class LayerdiffError(Exception):
    """Base of every error layerdiff raises on purpose."""


class InvalidArgumentError(LayerdiffError):
    """The caller asked for something that cannot mean anything (bad option, bad path)."""


class NotFoundError(LayerdiffError):
    """A named input (file, directory, blob) does not exist."""


class UnsupportedError(LayerdiffError):
    """The input is well formed but uses something layerdiff does not handle."""


class UnsupportedCompressionError(UnsupportedError):
    """The layer is compressed with a format other than gzip or zstd."""


class CorruptLayerError(LayerdiffError):
    """The layer's bytes are damaged: bad compression, truncation, a malformed tar header."""


class InvalidLayerError(LayerdiffError):
    """The layer is well formed tar but breaks the changeset rules (e.g. a bare whiteout)."""


class SourceError(LayerdiffError):
    """Reading the layer itself failed (an I/O error of the file or stream it comes from)."""


class TargetError(LayerdiffError):
    """The file system under the target refused an operation (ENOSPC, EACCES, EROFS...)."""


class TreeReadError(LayerdiffError):
    """A tree being compared could not be read, or changed while it was read."""
