"""The ping policy: how often a client may PING the server (grpc-go's and grpcio's rule).

A PING from the client that comes less than ``min_ping_interval`` after its previous one,
with no DATA sent by the server in between, is a strike; the third strike (more than
``MAX_STRIKES``) gets GOAWAY ENHANCE_YOUR_CALM with ``too_many_pings`` as its debug data,
which grpc-go and grpcio clients read as "double your keepalive time". DATA sent by the
server clears the strikes (a client's BDP pings answer what it receives). A client whose
keepalive pings are at least ``min_ping_interval`` apart is never punished.

While the client has no call open, its pings may come only every ``IDLE_PING_INTERVAL``
(in effect: one), unless the server permits pings without calls (grpc-go's
``PermitWithoutStream``, grpcio's ``grpc.keepalive_permit_without_calls``; both off by
default, as here): a client that keeps an idle connection alive needs the server's leave.

This is about rate; the control-frame budget (``muxs.server.budgets``) still bounds floods.
"""

from __future__ import annotations

from collections.abc import Callable

#: Strikes tolerated; one more gets GOAWAY (grpc-go's ``maxPingStrikes``, grpcio's
#: ``grpc.http2.max_ping_strikes`` default).
MAX_STRIKES = 2
#: The debug data of the GOAWAY, as grpc-go and grpcio send it (their clients look for it).
TOO_MANY_PINGS = b"too_many_pings"
#: The least interval between pings while no call is open, unless permitted (grpc-go's
#: ``defaultPingTimeout``, grpc core's two hours).
IDLE_PING_INTERVAL = 7200.0


class PingPolicy:
    """One connection's record of its client's pings; ``min_interval`` 0 allows any rate;
    ``permit_without_calls``: pings while no call is open are held to ``min_interval``
    too (else to ``IDLE_PING_INTERVAL``)."""

    def __init__(
        self,
        min_interval: float,
        clock: Callable[[], float],
        *,
        permit_without_calls: bool = False,
    ) -> None:
        self._min_interval = min_interval
        self._permit_without_calls = permit_without_calls
        self._clock = clock
        self._last_ping: float | None = None
        self._data_sent_mark: object = None
        #: Pings that came too soon since the server last sent DATA.
        self.strikes = 0
        #: Pings received in all.
        self.received = 0

    def ping_received(self, data_sent_mark: object, *, calls_open: bool) -> bool:
        """A PING came, with a call open or not; ``data_sent_mark`` changes whenever the
        server sends DATA. True if this ping is one strike too many."""
        now = self._clock()
        self.received += 1
        if data_sent_mark != self._data_sent_mark:
            self._data_sent_mark = data_sent_mark
            self.strikes = 0
        elif (
            self._min_interval
            and self._last_ping is not None
            and now - self._last_ping < self.allowed_interval(calls_open)
        ):
            self.strikes += 1
        self._last_ping = now
        return self.strikes > MAX_STRIKES

    def allowed_interval(self, calls_open: bool) -> float:
        """The least seconds between two pings, with a call open or not."""
        if calls_open or self._permit_without_calls:
            return self._min_interval
        return max(self._min_interval, IDLE_PING_INTERVAL)
