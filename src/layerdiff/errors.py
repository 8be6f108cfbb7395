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


class NotHandledError(UnsupportedError):
    """This differ cannot take the request at all (its media type, its mounts), before
    touching anything: another differ may. Raised only before any work is done."""


class UnsupportedCompressionError(UnsupportedError):
    """The layer is compressed with a format other than gzip or zstd."""


class CorruptLayerError(LayerdiffError):
    """The layer's bytes are damaged: bad compression, truncation, a malformed tar header."""


class InvalidLayerError(LayerdiffError):
    """The layer is well formed tar but breaks the changeset rules (e.g. a bare whiteout)."""


class PermissionDeniedError(LayerdiffError):
    """A registry (or its token server) refused the credentials, or they lack the right."""


class LimitExceededError(LayerdiffError):
    """The layer went past a configured limit (its size, entries, a header or an xattr)."""


class SourceError(LayerdiffError):
    """Reading the layer itself failed (an I/O error of the file or stream it comes from)."""


class ProcessorError(LayerdiffError):
    """An external stream processor could not be run, or exited with a failure."""


class TargetError(LayerdiffError):
    """The file system under the target refused an operation (ENOSPC, EACCES, EROFS...)."""


class TreeReadError(LayerdiffError):
    """A tree being compared could not be read, or changed while it was read."""


class AlreadyExistsError(LayerdiffError):
    """What the caller wants to create exists already (a committed blob, a label)."""


class FailedPreconditionError(LayerdiffError):
    """The state does not allow the operation (a commit whose size or digest is not the
    expected one, a closed writer)."""


class UnavailableError(LayerdiffError):
    """The resource is busy right now (an ingest ref another writer holds); retry later."""


class CanceledError(LayerdiffError):
    """The caller cancelled the operation; the work was stopped and cleaned up."""


class DeadlineExceededError(LayerdiffError):
    """The operation ran past its time limit; the work was stopped and cleaned up."""
