"""The one place where errors become gRPC status codes.

Handlers raise the core's typed errors (or the few CSI-only ones below); the server
interceptor calls :func:`status_for` and aborts the call with the mapped code. The
message is always a sentence for a person; an unexpected exception becomes INTERNAL
with a short message while its traceback stays in the server log.
"""

from __future__ import annotations

import grpc

from plugin import errors


class OutOfRange(errors.VolumeError):
    """A capacity the backend cannot honour (CSI: OUT_OF_RANGE)."""


class Aborted(errors.VolumeError):
    """A request that may succeed when retried unchanged later, e.g. a stale page token."""


class Unimplemented(errors.VolumeError):
    """An RPC or feature this driver does not offer (the CO must not retry)."""


# Order matters only for subclasses; the core's classes are siblings.
_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.NoSpace, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.InUse, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Busy, grpc.StatusCode.ABORTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.NodeOffline, grpc.StatusCode.UNAVAILABLE),
    (OutOfRange, grpc.StatusCode.OUT_OF_RANGE),
    (Aborted, grpc.StatusCode.ABORTED),
    (Unimplemented, grpc.StatusCode.UNIMPLEMENTED),
)


#: Every error code (class name) a CSI call can end with on purpose, for the metrics' zero series.
RESULT_CODES: tuple[str, ...] = (*(cls.__name__ for cls, _ in _CODES), errors.OperationFailed.__name__)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map any exception to the code and message the client sees."""
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code, str(exc) or cls.__name__
    if isinstance(exc, NotImplementedError):  # the generated base servicer's default
        return grpc.StatusCode.UNIMPLEMENTED, "this RPC is not implemented by the driver"
    if isinstance(exc, errors.VolumeError):  # OperationFailed and anything new
        return grpc.StatusCode.INTERNAL, str(exc) or "the operation failed"
    return (
        grpc.StatusCode.INTERNAL,
        f"internal error in the CSI driver ({type(exc).__name__}); see the driver log",
    )


def is_expected(exc: BaseException) -> bool:
    """True for errors raised on purpose (no traceback needed in the log)."""
    return isinstance(exc, errors.VolumeError | NotImplementedError)
