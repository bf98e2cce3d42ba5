"""Refusals that tell a program what to do: ``GRPCError`` with ``google.rpc`` details.

The server's codec (``ProtoStatusDetailsCodec``, set in ``muxs.server.limits``) packs
``GRPCError.details`` into a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer, which grpcio-status, the muxs SDK (``RpcError.details``) and other gRPC clients
decode. A handler of any hosted service raises its own the same way:
``GRPCError(StatusCode.X, "what to do", [BadRequest(...)])``.
"""

from __future__ import annotations

from typing import NoReturn

from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, QuotaFailure, RetryInfo
from grpclib.exceptions import GRPCError

from muxs.errors import StatusCode


def refuse_field(status: StatusCode, field: str, message: str) -> NoReturn:
    """Refuse a request whose ``field`` breaks a rule: a ``BadRequest`` naming it."""
    raise field_refusal(status, field, message)


def field_refusal(status: StatusCode, field: str, message: str) -> GRPCError:
    """The refusal of a request whose ``field`` breaks a rule: a ``BadRequest`` naming it."""
    violation = BadRequest.FieldViolation(field=field, description=message)
    return GRPCError(status, message, [BadRequest(field_violations=[violation])])


def over_limit(limit: str, message: str) -> GRPCError:
    """RESOURCE_EXHAUSTED past a server limit: a ``QuotaFailure`` whose subject is the
    limit's setting (``max_message_bytes``...)."""
    violation = QuotaFailure.Violation(subject=limit, description=message)
    return GRPCError(StatusCode.RESOURCE_EXHAUSTED, message, [QuotaFailure(violations=[violation])])


def retry_after(seconds: float, status: StatusCode, message: str) -> GRPCError:
    """A refusal worth retrying after ``seconds``: a ``RetryInfo`` saying so."""
    delay = Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    return GRPCError(status, message, [RetryInfo(retry_delay=delay)])


#: The ``ErrorInfo`` of a call refused by a drain before its handler ran: clients may send it
#: again elsewhere (the muxs SDK does, transparently).
DRAINING = ErrorInfo(reason="DRAINING", domain="muxs")


def draining(seconds: float, message: str) -> GRPCError:
    """UNAVAILABLE for a call a drain refused before its handler ran: a ``RetryInfo`` of
    ``seconds`` and the ``DRAINING`` ``ErrorInfo``."""
    refusal = retry_after(seconds, StatusCode.UNAVAILABLE, message)
    refusal.details = [*refusal.details, DRAINING]
    return refusal
