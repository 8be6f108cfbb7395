"""layerdiff's errors as gRPC status codes and back: the one table for both directions.

The codes are the ones containerd's ``errdefs`` gives its error kinds, so containerd
reads our failures as its own: above all ``UNIMPLEMENTED`` (containerd's
``ErrNotImplemented``) for a request this differ refused before touching anything
(``NotHandledError``), which tells containerd's diff service to try its next differ
instead of failing the unpack.
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from layerdiff.errors import (
    AlreadyExistsError,
    CanceledError,
    CorruptLayerError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    InvalidLayerError,
    LayerdiffError,
    LimitExceededError,
    NotFoundError,
    NotHandledError,
    PermissionDeniedError,
    ProcessorError,
    SourceError,
    TargetError,
    TreeReadError,
    UnavailableError,
    UnsupportedError,
)

# Most specific first: the first class an error is an instance of gives its code.
_CODES: tuple[tuple[type[LayerdiffError], grpc.StatusCode], ...] = (
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    # A damaged or rule-breaking layer is bad input: retrying it or another differ
    # would not help, so not UNIMPLEMENTED and not a server fault.
    (CorruptLayerError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidLayerError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    # Only a request this differ refused before touching anything may go to the next
    # differ; an unsupported entry found halfway through a layer has changed the target.
    (NotHandledError, grpc.StatusCode.UNIMPLEMENTED),
    (UnsupportedError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (CanceledError, grpc.StatusCode.CANCELLED),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    # containerd reports these as plain errors: UNKNOWN (INTERNAL is kept for bugs).
    (ProcessorError, grpc.StatusCode.UNKNOWN),
    (TargetError, grpc.StatusCode.UNKNOWN),
    (SourceError, grpc.StatusCode.UNKNOWN),
    (TreeReadError, grpc.StatusCode.UNKNOWN),
)

_ERRORS: dict[grpc.StatusCode, type[LayerdiffError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    # containerd answers a read past the end or a write at the wrong offset so.
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNIMPLEMENTED: NotHandledError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.CANCELLED: CanceledError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceededError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def code_for(error: BaseException) -> grpc.StatusCode:
    """The status code that reports ``error``; ``INTERNAL`` for anything unexpected."""
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def abort(context: grpc.ServicerContext, error: BaseException) -> NoReturn:
    """End the RPC being served with ``error``'s code and its one-line message."""
    message = str(error) or type(error).__name__
    context.abort(code_for(error), message)
    raise AssertionError("grpc's abort returned")  # it always raises


def error_from_rpc(error: grpc.RpcError) -> LayerdiffError:
    """The ``LayerdiffError`` matching a failed call's status, with the peer's message."""
    if not isinstance(error, grpc.Call):  # every RpcError grpc raises is also a Call
        return LayerdiffError(f"gRPC call failed: {error}")
    code = error.code()
    details = error.details() or code.name.lower()
    cls = _ERRORS.get(code)
    if cls is None:
        return LayerdiffError(f"{details} ({code.name})")
    return cls(details)
