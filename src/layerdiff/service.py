"""The diff service: differs tried in the configured order, as containerd's
``services/diff/local.go``.

A differ that cannot take a request (an unknown media type, a mount it does not know)
raises ``NotHandledError`` before doing anything; the service then asks the next one
(containerd's ``ErrNotImplemented``). Any other outcome, success or failure, is final: a
differ that failed halfway has touched the target, and another must not try on top.
The service knows nothing about gRPC or tar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from layerdiff.cancel import CancelToken
from layerdiff.content.store import Store
from layerdiff.errors import InvalidArgumentError, NotHandledError
from layerdiff.mount import Mount
from layerdiff.oci import Descriptor


@dataclass(frozen=True)
class ApplyRequest:
    """Apply the blob ``desc`` (read from ``store``) onto ``mounts``."""

    desc: Descriptor
    mounts: Sequence[Mount]
    store: Store
    #: Bytes for external stream processors' file descriptor 3, by processor ID.
    payloads: Mapping[str, bytes] = field(default_factory=dict)
    #: Flush the target file system when done (containerd's ``sync_fs``).
    sync_fs: bool = False
    cancel: CancelToken = field(default_factory=CancelToken)


@dataclass(frozen=True)
class DiffRequest:
    """Write the layer between ``lower`` and ``upper`` into ``store``."""

    lower: Sequence[Mount]
    upper: Sequence[Mount]
    store: Store
    #: The layer's media type; empty for the differ's default (tar+gzip).
    media_type: str = ""
    #: The ingest ref to write through; empty for a fresh one.
    ref: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    source_date_epoch: int | None = None
    cancel: CancelToken = field(default_factory=CancelToken)


class Differ(Protocol):
    """Applies and computes layers; raises ``NotHandledError`` for what it cannot take."""

    def apply(self, request: ApplyRequest) -> Descriptor:
        """Apply the layer; return the applied (uncompressed) descriptor."""

    def compare(self, request: DiffRequest) -> Descriptor:
        """Compute and commit the layer; return its descriptor."""


class DiffService:
    """Differs in order of preference."""

    def __init__(self, differs: Sequence[Differ]) -> None:
        if not differs:
            raise InvalidArgumentError("the diff service needs at least one differ")
        self._differs = list(differs)

    def apply(self, request: ApplyRequest) -> Descriptor:
        """The first differ's answer that is not "not handled"."""
        return self._first(lambda differ: differ.apply(request))

    def compare(self, request: DiffRequest) -> Descriptor:
        """The first differ's answer that is not "not handled"."""
        return self._first(lambda differ: differ.compare(request))

    def _first(self, call: Callable[[Differ], Descriptor]) -> Descriptor:
        error: NotHandledError | None = None
        for differ in self._differs:
            try:
                return call(differ)
            except NotHandledError as err:
                error = err
        assert error is not None
        raise error
