"""Fewer system calls: the bytes a connection writes in one event-loop turn go out together.

grpclib hands each HTTP/2 frame group to the transport as it is made: a unary call's
headers, message and trailers are three writes, each a system call (and, on loopback, the
receiving side's TCP work too). ``CoalescingTransport`` gathers the writes of one turn of
the event loop and passes them on at the start of the next, in one ``writelines``: with
many calls in flight on a connection, one system call carries many calls' frames. The
server's connections (``muxs.server.limits``) and the SDK's (``muxs.channel``) use it; the
SDK's passes large writes (an upload's chunks) on at once, after what it holds, as
gathering them only delays and copies them; so is a unary request alone on its connection
(``write_now``: nothing would join it, and waiting for the next turn costs a turn of the
loop per call).

Other work a connection does once a turn can join the flush (``before_flush``: the server's
acknowledgements of the data its calls read), so that a turn costs one callback, not two.

Back-pressure is unchanged: the underlying transport still pauses the protocol when its
buffer is full, one turn later at most (a server stream yields to the loop every few
milliseconds: ``muxs.server.deadlines``). CPython 3.12.0-3.12.8 and 3.13.0-3.13.1 forget that
check in ``writelines`` (gh-127655, CVE-2024-12254): a peer that reads nothing would make
the buffer grow without end; ``flush`` makes the check itself there.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

#: Whether this CPython's selector transport pauses its protocol in ``writelines``.
_WRITELINES_PAUSES = not (
    (3, 12) <= sys.version_info[:3] < (3, 12, 9) or (3, 13) <= sys.version_info[:3] < (3, 13, 2)
)


class CoalescingTransport:
    """The parts of an ``asyncio.Transport`` grpclib uses, with writes gathered per turn."""

    def __init__(self, transport: asyncio.Transport, *, bypass: int | None = None) -> None:
        """``bypass``: a write of that many bytes or more goes out at once (None: none does)."""
        self._transport = transport
        self._bypass = bypass
        self._pending: list[bytes] = []
        self._before_flush: list[Callable[[], None]] = []
        #: Bytes passed on to the underlying transport so far.
        self.bytes_written = 0
        #: Writes (of any bytes) made so far.
        self.writes = 0
        self._lingering = False
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._bypass is not None and len(data) >= self._bypass:
            self.write_now(data)
            return
        self.writes += 1
        if not self._pending and not self._before_flush:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def before_flush(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` at the next flush (in the next turn of the event loop unless the
        transport flushes before), before what was written goes out, with what it writes."""
        if not self._pending and not self._before_flush:
            self._loop.call_soon(self.flush)
        self._before_flush.append(callback)

    def write_now(self, data: bytes) -> None:
        """Pass ``data`` on at once, after what is pending: a write that nothing else in this
        turn would join (a large one; a request alone on its connection)."""
        self.writes += 1
        self._pending.append(data)
        self.flush()

    def flush(self) -> None:
        """Pass on what was written since the last flush (``before_flush``'s callbacks first)."""
        before = self._before_flush
        if before:
            try:
                for callback in before:  # one added meanwhile runs in this loop too
                    callback()
            finally:  # one that raised leaves neither the others' writes nor later ones stuck
                before.clear()
                self._pass_on()
            return
        self._pass_on()

    def _pass_on(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            if not self._transport.is_closing():
                self.bytes_written += sum(map(len, pending))
                self._transport.writelines(pending)
                if not _WRITELINES_PAUSES:
                    self._check_buffer()

    def _check_buffer(self) -> None:
        """Pause the protocol if the transport's buffer is over its high-water mark (setting
        the limits again makes that check: public API, harmless where it is redundant)."""
        transport = self._transport
        if transport.get_write_buffer_size() and not transport.is_closing():
            low, high = transport.get_write_buffer_limits()
            transport.set_write_buffer_limits(high, low)

    @property
    def pending_bytes(self) -> int:
        """Bytes written in this turn, not yet passed on."""
        return sum(map(len, self._pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def linger(self, seconds: float) -> None:
        """Close gently: what was written goes out, then the end of the stream (FIN); the
        socket closes ``seconds`` later unless the peer closes first. Closing at once with
        the peer's data unread would send it a TCP reset, which can destroy our last frames
        (a GOAWAY) before it reads them."""
        self.flush()
        self._lingering = True
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self._loop.call_later(seconds, self._transport.close)

    def is_closing(self) -> bool:
        return self._lingering or self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)
