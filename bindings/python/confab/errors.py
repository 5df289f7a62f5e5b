"""Exceptions: one class per Confab ErrorCode, plus the client-side ones.

Every exception derives from ConfabError, which carries ``code`` (the ErrorCode name, e.g.
"NO_NODE"), ``path`` (the node the error is about, when the server named one) and
``failed_op`` (for a failed multi: the index of the first failing op, else -1).
"""

from __future__ import annotations


class ConfabError(Exception):
    """Base of every Confab error. ``code`` is the ErrorCode name (``None`` for client-side
    errors that have no server code)."""

    code: str | None = None

    def __init__(self, message: str = "", path: str = "", failed_op: int = -1,
                 code: str | None = None):
        super().__init__(message or (code or type(self).code or type(self).__name__))
        self.message = message
        self.path = path
        self.failed_op = failed_op
        if code is not None:
            self.code = code
        # For a failed multi: one entry per op (a result, or the ConfabError of that op).
        self.results: list | None = None

    def __str__(self) -> str:
        return self.message or str(self.code)


class NoNodeError(ConfabError):
    code = "NO_NODE"


class NodeExistsError(ConfabError):
    code = "NODE_EXISTS"


class BadVersionError(ConfabError):
    code = "BAD_VERSION"


class NotEmptyError(ConfabError):
    code = "NOT_EMPTY"


class NoChildrenForEphemeralsError(ConfabError):
    code = "NO_CHILDREN_FOR_EPHEMERALS"


class SessionExpiredError(ConfabError):
    code = "SESSION_EXPIRED"


class InvalidPathError(ConfabError):
    code = "INVALID_PATH"


class TooLargeError(ConfabError):
    code = "TOO_LARGE"


class InvalidArgumentError(ConfabError):
    code = "INVALID_ARGUMENT"


class RuntimeInconsistencyError(ConfabError):
    """A multi op rolled back because another op of the same multi failed."""

    code = "RUNTIME_INCONSISTENCY"


class UnavailableError(ConfabError):
    code = "UNAVAILABLE"


class InternalError(ConfabError):
    code = "INTERNAL"


class UnimplementedError(ConfabError):
    code = "UNIMPLEMENTED"


class ConnectionLossError(UnavailableError):
    """Client-side: the stream broke while the request was in flight. A read can simply be
    retried; a write may or may not have been applied (see the recipes' protected creates)."""


class OperationTimeoutError(ConfabError):
    """Client-side: no response within the call's timeout (the request may still be applied)."""

    code = None


class ClientClosedError(SessionExpiredError):
    """Client-side: the client was closed; its session is gone."""


_BY_CODE: dict[str, type[ConfabError]] = {
    cls.code: cls
    for cls in (
        NoNodeError,
        NodeExistsError,
        BadVersionError,
        NotEmptyError,
        NoChildrenForEphemeralsError,
        SessionExpiredError,
        InvalidPathError,
        TooLargeError,
        InvalidArgumentError,
        RuntimeInconsistencyError,
        UnavailableError,
        InternalError,
        UnimplementedError,
    )
}


def error_for(code: str, message: str = "", path: str = "", failed_op: int = -1) -> ConfabError:
    """The exception for an ErrorCode name (a plain ConfabError for a code this client does not
    know)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return ConfabError(message, path, failed_op, code=code)
    return cls(message, path, failed_op)


def error_from_rpc(rpc_error) -> ConfabError:
    """The exception for a failed unary gRPC call: the trailer ``confab-error-code`` names the
    code, ``confab-failed-op`` the failing op of a Multi."""
    code = "UNAVAILABLE"
    failed_op = -1
    for key, value in rpc_error.trailing_metadata() or ():
        if key == "confab-error-code":
            code = value
        elif key == "confab-failed-op":
            failed_op = int(value)
    return error_for(code, rpc_error.details() or "", "", failed_op)
