"""Rich error details: the ``google.rpc.Status`` a server sends in ``grpc-status-details-bin``.

The SDK's channel keeps the trailer's bytes (``KeepStatusDetails``, which imports nothing
of protobuf) and ``RpcError.details`` decodes them when first read (``decode_details``), so
a client that never looks at details never loads protobuf. The detail types are
googleapis-common-protos' (``google.rpc.error_details_pb2``: BadRequest, ErrorInfo,
RetryInfo, QuotaFailure, PreconditionFailure, ResourceInfo, Help, LocalizedMessage,
DebugInfo, RequestInfo), the ones grpcio-status and every other gRPC implementation use.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from grpclib.const import Status as StatusCode
from grpclib.encoding.base import StatusDetailsCodecBase

if TYPE_CHECKING:
    from google.protobuf.message import Message

log = logging.getLogger(__name__)


class KeepStatusDetails(StatusDetailsCodecBase):
    """A client's status-details codec that hands grpclib's ``GRPCError`` the raw bytes."""

    def encode(self, status: StatusCode, message: str | None, details: Any) -> bytes:
        raise NotImplementedError("a client sends no status details")

    def decode(self, status: StatusCode, message: str | None, data: bytes) -> bytes:
        return data


def decode_details(data: bytes) -> Sequence[Message]:
    """The detail messages of a serialized ``google.rpc.Status``: each unpacked into its
    type when the default descriptor pool knows it, else left as its ``Any``; () if the
    bytes are not a ``Status``."""
    from google.protobuf import symbol_database
    from google.protobuf.message import DecodeError
    from google.rpc import error_details_pb2  # noqa: F401 - registers the standard types
    from google.rpc.status_pb2 import Status

    try:
        status = Status.FromString(data)
    except DecodeError:
        log.debug("grpc-status-details-bin is not a google.rpc.Status; ignored")
        return ()
    database = symbol_database.Default()
    details: list[Message] = []
    for packed in status.details:
        try:
            kind = database.GetSymbol(packed.TypeName())
        except KeyError:
            details.append(packed)
            continue
        detail = kind()
        packed.Unpack(detail)
        details.append(detail)
    return details
