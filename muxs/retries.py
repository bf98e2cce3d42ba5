"""Retries of failed calls, after gRPC's retry design (gRFC A6) and grpcio's behaviour.

Two kinds, both within the call's deadline, both below the interceptors (an interceptor
sees one attempt however many were sent):

- transparent: a call the server never processed is sent again once (after a GOAWAY, on a
  fresh connection; with several servers, once per server, each to the next), with no
  policy needed: one a GOAWAY refused (its stream above the GOAWAY's last stream id), a
  stream reset with REFUSED_STREAM, a call refused by a server's drain before its handler
  ran (UNAVAILABLE with muxs's ``DRAINING`` ``ErrorInfo``: after its ``RetryInfo`` delay),
  or one whose connection was refused or reset before the request was sent. With several
  servers, so is one whose connection failed before the server answered (``ConnectFailure``:
  closed, as a stopping server's listening socket resets the connections in its backlog;
  timed out; TLS refused): it goes to the next server (the failed one's connection backoff
  keeps it out of the turn), as grpc's round robin only picks a ready server; with one, it
  is not (it would fail again, a timeout after as long again);
- by a ``RetryPolicy`` (off unless the client is given one): a call that ended with a
  retryable status is sent again after an exponential backoff with jitter, or after the
  delay of the server's ``RetryInfo`` (pushback), up to ``max_attempts`` in all.

Streaming calls too, while they are not committed (``muxs.calls``): a call is committed
once the server's response headers arrive (gRFC A6; a muxs or grpclib server sends them
with its first reply), and a call that streams requests once they outgrow the bytes kept
to send them again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from grpclib.exceptions import StreamTerminatedError

from muxs._internals import is_refused_stream, sent_request_stream
from muxs.errors import ConfigError, ConnectFailure, RpcError, StatusCode

__all__ = ["RetryPolicy"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed call is sent again (gRPC's ``retryPolicy``).

    ``max_attempts``: attempts in all, the first included (2 or more). The n-th retry waits
    a random time up to ``min(initial_backoff * backoff_multiplier ** (n - 1), max_backoff)``
    seconds, or what the server's ``RetryInfo`` asks. Only a call that ended with one of
    ``retryable_status_codes`` is retried; never past its deadline.
    """

    max_attempts: int = 3
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    backoff_multiplier: float = 2.0
    retryable_status_codes: frozenset[StatusCode] = field(
        default_factory=lambda: frozenset({StatusCode.UNAVAILABLE})
    )

    def __post_init__(self) -> None:
        if not self.max_attempts >= 2:
            raise ConfigError("max_attempts", f"{self.max_attempts} is not a number >= 2")
        for name in ("initial_backoff", "max_backoff"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"{getattr(self, name)} is not a number > 0")
        if not self.backoff_multiplier >= 1:
            raise ConfigError(
                "backoff_multiplier", f"{self.backoff_multiplier} is not a number >= 1"
            )
        codes = frozenset(self.retryable_status_codes)
        if not codes or StatusCode.OK in codes:
            raise ConfigError(
                "retryable_status_codes", "give one status or more, OK not among them"
            )
        object.__setattr__(self, "retryable_status_codes", codes)

    def backoff(self, retry: int) -> float:
        """The random wait before the ``retry``-th retry (1 for the first)."""
        ceiling = self.initial_backoff * self.backoff_multiplier ** (retry - 1)
        return random.uniform(0, min(ceiling, self.max_backoff))


def unprocessed(error: RpcError, stream: Any, refused_by_goaway: Callable[[Any], bool]) -> bool:
    """Whether the call that failed with ``error`` on grpclib's client ``stream`` (None: never
    opened) was refused before the server's handler saw it."""
    cause = error.__cause__
    if stream is None or sent_request_stream(stream) is None:
        return isinstance(cause, OSError)  # the connection failed before the request left
    if isinstance(cause, StreamTerminatedError):
        return is_refused_stream(cause) or refused_by_goaway(stream)
    return error.status is StatusCode.UNAVAILABLE and _refused_by_drain(error)


def _refused_by_drain(error: RpcError) -> bool:
    """Whether a muxs server's drain refused the call before its handler ran (its
    ``ErrorInfo``: reason DRAINING, domain muxs; ``muxs.server.refusals.draining``)."""
    if not error.details:
        return False
    from google.rpc.error_details_pb2 import ErrorInfo

    info = error.detail(ErrorInfo)
    return info is not None and (info.reason, info.domain) == ("DRAINING", "muxs")


def _pushback(error: RpcError) -> float | None:
    """The delay the server's ``RetryInfo`` asks for, in seconds (None: it sent none)."""
    if not error.details:
        return None
    from google.rpc.error_details_pb2 import RetryInfo

    info = error.detail(RetryInfo)
    if info is None or not info.HasField("retry_delay"):
        return None
    return max(info.retry_delay.ToNanoseconds() / 1e9, 0.0)


#: How a call that waits for ready tries to connect again: grpc's connection backoff (first
#: wait, multiplier, jitter, longest wait in seconds), as grpcio and grpc-go have it.
CONNECT_FIRST_WAIT = 1.0
CONNECT_MULTIPLIER = 1.6
CONNECT_JITTER = 0.2
CONNECT_LONGEST_WAIT = 120.0


def connect_backoff(retry: int) -> float:
    """The wait before the ``retry``-th connection attempt of a call that waits for ready."""
    wait = min(CONNECT_FIRST_WAIT * CONNECT_MULTIPLIER ** (retry - 1), CONNECT_LONGEST_WAIT)
    return wait * random.uniform(1 - CONNECT_JITTER, 1 + CONNECT_JITTER)


def _connect_failed(error: RpcError) -> bool:
    """Whether the call failed because no connection could be made (nothing was sent)."""
    return error.unprocessed and isinstance(error.__cause__, OSError)


class Attempts:
    """The attempts of one call: after an attempt failed, ``await attempts.before_retry(error)``
    waits until the next one may be sent, or raises if there is none.

    ``remaining()`` is the deadline left for the next attempt (seconds, None: none); an
    attempt's ``RpcError`` says with ``unprocessed`` whether the server never handled it.
    ``wait_for_ready``: a call whose connection fails is tried again (with grpc's connection
    backoff) until its deadline, instead of failing UNAVAILABLE at once.
    ``transparent_retries``: how many times a call the server never processed is sent again
    (once per server the client has, so that each may be tried); with more than one, a call
    whose connection failed before the server answered is among them (it goes to the next).
    """

    def __init__(
        self,
        timeout: float | None,
        policy: RetryPolicy | None,
        *,
        wait_for_ready: bool = False,
        transparent_retries: int = 1,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._deadline = None if timeout is None else self._loop.time() + timeout
        self._policy = policy
        self._wait_for_ready = wait_for_ready
        self._transparent_left = transparent_retries
        self._fail_over = transparent_retries > 1
        self._connects = 0
        self._retries = 0

    def remaining(self) -> float | None:
        """The seconds left before the call's deadline (None: no deadline)."""
        return None if self._deadline is None else self._deadline - self._loop.time()

    async def before_retry(self, error: RpcError) -> None:
        """Wait before the call is sent again after ``error``; raise ``error`` if it may
        not be (or DEADLINE_EXCEEDED for a call that waited for ready until its deadline)."""
        delay = self._delay(error)
        remaining = self.remaining()
        if delay is None:
            raise error
        if remaining is not None and delay >= remaining:
            if self._connects:  # waited for ready until the deadline: grpc's status
                await asyncio.sleep(remaining)
                raise RpcError(
                    StatusCode.DEADLINE_EXCEEDED,
                    f"deadline exceeded waiting for a connection ({error.message})",
                ) from error
            raise error
        log.debug("retrying in %.3fs after %s", delay, error)
        await asyncio.sleep(delay)

    def _delay(self, error: RpcError) -> float | None:
        """How long to wait before sending the call again after ``error`` (None: never)."""
        if self._wait_for_ready and _connect_failed(error):
            self._connects += 1
            return connect_backoff(self._connects)
        # A connection made that failed before the server answered would fail again on
        # the same server: only another one is tried.
        if (
            error.unprocessed
            and self._transparent_left
            and (self._fail_over or not isinstance(error.__cause__, ConnectFailure))
        ):
            self._transparent_left -= 1
            return _pushback(error) or 0.0
        policy = self._policy
        if (
            policy is None
            or self._retries + 1 >= policy.max_attempts
            or error.status not in policy.retryable_status_codes
        ):
            return None
        self._retries += 1
        pushback = _pushback(error)
        return policy.backoff(self._retries) if pushback is None else pushback
