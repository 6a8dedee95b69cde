"""Domain errors: raised by plain-Python service logic, mapped to gRPC / HTTP status at the edge.

Messages are shown to the caller, so they say what went wrong and what to do next; they never
carry patient identifiers.
"""

from __future__ import annotations


class MarrowscopeError(Exception):
    """Base class. ``code`` names the gRPC status the transport layer answers with."""

    code = "INTERNAL"
    http_status = 500


class InvalidArgument(MarrowscopeError):
    code = "INVALID_ARGUMENT"
    http_status = 422


class InvalidImage(InvalidArgument):
    """The bytes are not an image we accept (wrong format, truncated, too large, odd mode)."""

    http_status = 415


class ImageTooLarge(InvalidImage):
    http_status = 413


class ObjectTooLarge(InvalidArgument):
    """A stored object is larger than the store's limit, so it is not read into memory."""

    http_status = 413


class NotFound(MarrowscopeError):
    code = "NOT_FOUND"
    http_status = 404


class AlreadyExists(MarrowscopeError):
    code = "ALREADY_EXISTS"
    http_status = 409


class FailedPrecondition(MarrowscopeError):
    code = "FAILED_PRECONDITION"
    http_status = 409


class Unauthenticated(MarrowscopeError):
    code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(MarrowscopeError):
    code = "PERMISSION_DENIED"
    http_status = 403


class ResourceExhausted(MarrowscopeError):
    """A capacity limit is reached (e.g. concurrent training jobs); retrying later may work."""

    code = "RESOURCE_EXHAUSTED"
    http_status = 429


class Unavailable(MarrowscopeError):
    """A dependency is down; ``service`` names it ("object store", "database", a peer)."""

    code = "UNAVAILABLE"
    http_status = 503

    def __init__(self, message: str, service: str = "") -> None:
        super().__init__(message)
        self.service = service


class IntegrityError(MarrowscopeError):
    """Stored bytes do not match their content address."""

    code = "DATA_LOSS"
    http_status = 500
