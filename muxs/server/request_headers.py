"""Request headers that grpclib cannot take, found before it sees them.

grpclib 0.4 leaves some malformed requests unanswered (it raises in its request handler,
logs "Server error" and the client waits for its own deadline) or answers them UNKNOWN;
``refusal`` finds them first and says how to answer, following what gRPC's protocol
(doc/PROTOCOL-HTTP2.md) and grpc-go do (docs/RELIABILITY.md lists each case):

- a request without ``:method``, ``:scheme`` or ``:path`` is not an HTTP/2 request
  (RFC 9113 section 8.3.1), nor one with a pseudo-header twice, one that is not a request's,
  one after a regular header, a field name with an uppercase letter, or a field that is
  specific to a connection (section 8.2): its stream is reset with PROTOCOL_ERROR (section
  8.1.1), as grpc-go does. grpclib has h2 skip these checks, and routed a request with two
  ``:path`` by the last;
- a header value outside printable ASCII (gRPC's ASCII-Value, %x20-%x7E; binary values
  travel base64-encoded in ``-bin`` headers), a ``-bin`` value that is not base64 and a
  ``grpc-timeout`` that is not 1 to 8 digits and a unit are INTERNAL, as in grpc-go;
- a ``grpc-timeout`` that has passed by the time the call could start (``DEADLINE_SLACK``
  or less) is DEADLINE_EXCEEDED;
- a well-formed gRPC request for a method the server does not have is UNIMPLEMENTED
  (``unknown_method``): grpclib answers it without ``content-type``, which grpclib clients,
  muxs's SDK among them, took for UNKNOWN.

The connection's h2 decodes header values as latin-1 (``muxs.server.limits``), so bytes outside
ASCII reach this check instead of failing the whole connection.
"""

from __future__ import annotations

import binascii
import functools
import re
from collections.abc import Collection, Container, Mapping
from dataclasses import dataclass

from grpclib.metadata import decode_bin_value

from muxs.errors import StatusCode
from muxs.server.deadlines import DEADLINE_SLACK

#: The pseudo-headers every HTTP/2 request carries (RFC 9113 section 8.3.1).
REQUIRED_PSEUDO_HEADERS = (":method", ":scheme", ":path")

#: The pseudo-headers a request may carry (RFC 9113 section 8.3.1).
REQUEST_PSEUDO_HEADERS = frozenset({":method", ":scheme", ":path", ":authority"})
#: Fields HTTP/2 forbids, as they belong to one HTTP/1 connection (RFC 9113 section 8.2.2).
CONNECTION_FIELDS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)

#: The content types of a request grpclib decodes (muxs's codec is protobuf).
GRPC_CONTENT_TYPES = ("application/grpc", "application/grpc+proto")

_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


@dataclass(frozen=True)
class Refusal:
    """How to answer a request: a gRPC ``status``, or (``status`` None) a stream reset."""

    status: StatusCode | None
    message: str


def refusal(headers: Collection[tuple[str, str]]) -> Refusal | None:
    """How to refuse a request with these ``headers``, or None if grpclib can take it."""
    return _refusal(tuple(headers))


#: A client sends the same headers call after call: each distinct set is checked once.
@functools.lru_cache(maxsize=256)
def _refusal(headers: tuple[tuple[str, str], ...]) -> Refusal | None:
    names = {name for name, _ in headers}
    missing = [name for name in REQUIRED_PSEUDO_HEADERS if name not in names]
    if missing:
        return Refusal(None, f"the request has no {', '.join(missing)}")
    for name, value in headers:
        if not _printable_ascii(name):
            return Refusal(StatusCode.INTERNAL, "a header name is not printable ASCII")
        if not _printable_ascii(value):
            return Refusal(
                StatusCode.INTERNAL,
                f"header {name!r} is not printable ASCII; send binary values base64-encoded "
                "in a header whose name ends in -bin",
            )
        if name.endswith("-bin") and not _base64(value):
            return Refusal(StatusCode.INTERNAL, f"header {name!r} is not base64")
    malformed = _malformed_field(headers)
    if malformed is not None:
        return Refusal(None, malformed)
    return _deadline_refusal([value for name, value in headers if name == "grpc-timeout"])


def _malformed_field(headers: tuple[tuple[str, str], ...]) -> str | None:
    """What makes ``headers`` a malformed HTTP/2 request (RFC 9113 sections 8.2 and 8.3),
    or None."""
    pseudo: set[str] = set()
    regular = False
    for name, _ in headers:
        if name.startswith(":"):
            if name not in REQUEST_PSEUDO_HEADERS or name in pseudo or regular:
                return f"pseudo-header {name!r} is unknown, repeated or after a regular header"
            pseudo.add(name)
            continue
        regular = True
        if name != name.lower():
            return "a header name has an uppercase letter"
        if name in CONNECTION_FIELDS:
            return f"header {name!r} is specific to a connection"
    return None


def unknown_method(fields: Mapping[str, str], methods: Container[str]) -> Refusal | None:
    """UNIMPLEMENTED for a gRPC request to a method not in ``methods``; None for a known one,
    or a request grpclib refuses for its content type or ``te`` first."""
    if fields.get(":path", "") in methods:
        return None
    if fields.get("content-type") not in GRPC_CONTENT_TYPES or fields.get("te") != "trailers":
        return None
    return Refusal(StatusCode.UNIMPLEMENTED, "Method not found")


def _deadline_refusal(timeouts: list[str]) -> Refusal | None:
    seconds = []
    for timeout in timeouts:
        match = _TIMEOUT.fullmatch(timeout)
        if match is None:
            return Refusal(
                StatusCode.INTERNAL, "malformed grpc-timeout: 1 to 8 digits and a unit of HMSmun"
            )
        seconds.append(int(match[1]) * _UNIT_SECONDS[match[2]])
    if seconds and min(seconds) <= DEADLINE_SLACK:
        return Refusal(StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the call started")
    return None


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _base64(value: str) -> bool:
    """Whether grpclib decodes ``value`` (padded or not, as gRPC's protocol allows)."""
    try:
        decode_bin_value(value.encode("ascii"))
    except (binascii.Error, ValueError):
        return False
    return True
