"""The one place a store's refusals (``muxs.server.storage.interface``) become gRPC statuses."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from grpclib.exceptions import GRPCError

from muxs.errors import StatusCode
from muxs.server.refusals import field_refusal
from muxs.server.storage.interface import (
    Changed,
    Exhausted,
    Forbidden,
    InvalidName,
    NotFound,
    StorageError,
    Unavailable,
    WrongKind,
)

#: The request field a refusal of a name's rules names in its ``BadRequest`` (``Files``'s and
#: ``Chunk``'s; ``ListRequest``'s is ``path``).
NAME_FIELD = "filename"

STATUSES: dict[type[StorageError], StatusCode] = {
    InvalidName: StatusCode.INVALID_ARGUMENT,
    Forbidden: StatusCode.PERMISSION_DENIED,
    NotFound: StatusCode.NOT_FOUND,
    WrongKind: StatusCode.FAILED_PRECONDITION,
    Changed: StatusCode.ABORTED,
    Exhausted: StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: StatusCode.UNAVAILABLE,
}


def refusal(exc: StorageError, field: str = NAME_FIELD) -> GRPCError:
    """The gRPC refusal of a store's refusal (a ``BadRequest`` naming the request's ``field``
    when it is about the name)."""
    status = next(STATUSES[kind] for kind in type(exc).__mro__ if kind in STATUSES)
    if exc.about_name:
        return field_refusal(status, field, exc.message)
    return GRPCError(status, exc.message)


@contextlib.contextmanager
def storage_refusals(field: str = NAME_FIELD) -> Iterator[None]:
    """Turn the ``StorageError`` raised in the block into its gRPC refusal."""
    try:
        yield
    except StorageError as exc:
        raise refusal(exc, field) from None
