"""The errors muxs raises, and the one place where lower-level errors become them.

    MuxsError            anything muxs raises on purpose
     ├── RpcError        a call failed: ``.status`` (a ``StatusCode``) and ``.message``
     ├── ConfigError     a server setting or client option is invalid (raised before anything
     │                   starts or connects: bad values, unusable certificate, key or token files)
     └── TokenError      no bearer token could be obtained for a call (the OAuth 2.0 token
                         endpoint failed or refused); the call was not sent

The SDK never lets a ``grpclib`` or transport exception through: ``translate_errors``
maps them to ``RpcError``. grpclib reports an expired client deadline as the builtin
``TimeoutError`` and an unreachable or dropped peer as ``StreamTerminatedError``,
``ConnectionError`` or another ``OSError``; those become DEADLINE_EXCEEDED and
UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from grpclib.const import Status as StatusCode
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

__all__ = [
    "ConfigError",
    "MuxsError",
    "RpcError",
    "StatusCode",
    "TokenError",
    "translate_errors",
]


class MuxsError(Exception):
    """Base class of every error muxs raises on purpose."""


class RpcError(MuxsError):
    """A call failed with a gRPC ``status`` and a human-readable ``message``."""

    def __init__(self, status: StatusCode, message: str) -> None:
        super().__init__(f"{status.name}: {message}" if message else status.name)
        self.status = status
        self.message = message


class ConfigError(MuxsError):
    """A setting or option is invalid: ``.option`` names it, ``.problem`` says why."""

    def __init__(self, option: str, problem: str, source: str = "") -> None:
        super().__init__(f"{option}: {problem}" + (f" (from {source})" if source else ""))
        self.option = option
        self.problem = problem
        self.source = source


class TokenError(MuxsError):
    """No bearer token could be obtained; the message says from where and why."""


_DEADLINE_EXCEEDED = "deadline exceeded"


@contextmanager
def translate_errors(target: str) -> Iterator[None]:
    """Re-raise grpclib and transport errors from a call to ``target`` as ``RpcError``."""
    try:
        yield
    except GRPCError as exc:
        # A deadline reads the same whether the client's timer or the server's trailers
        # (which grpclib sends without a message) reported it.
        missing = _DEADLINE_EXCEEDED if exc.status is StatusCode.DEADLINE_EXCEEDED else ""
        raise RpcError(exc.status, exc.message or missing) from exc
    except TimeoutError as exc:
        raise RpcError(StatusCode.DEADLINE_EXCEEDED, _DEADLINE_EXCEEDED) from exc
    except (StreamTerminatedError, ProtocolError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise RpcError(StatusCode.UNAVAILABLE, f"cannot reach {target}: {reason}") from exc
