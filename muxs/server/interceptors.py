"""Server interceptors: async callables around every call, composed in order.

An interceptor is ``async def interceptor(call: CallContext, proceed: ServerProceed) -> None``. It
sees the call (``muxs.server.context.CallContext``: method, request metadata, peer, identity,
deadline); it may refuse it by raising ``grpclib.exceptions.GRPCError`` instead of awaiting
``proceed()``, add response headers and trailers, and watch the call's messages; after
``await proceed()`` (in a ``finally:``, since a failed call raises) it reads the outcome:
``call.status``, ``call.elapsed()``, ``call.received`` and ``call.sent``. The first of a
server's interceptors is the outermost.

muxs's own auth is the first interceptor when auth or mutual TLS is on
(``muxs.server.verification.authenticator``), so the others see the caller's identity. The drain's
refusal runs before any interceptor, and the access log and metrics are observers of the
outcome (``muxs.server.hooks``), so that a server without interceptors pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from muxs.server.context import CallContext

#: Runs the rest of the call: the next interceptors, then the handler.
ServerProceed = Callable[[], Awaitable[None]]
#: An interceptor: ``async def (call, proceed) -> None``.
ServerInterceptor = Callable[[CallContext, ServerProceed], Awaitable[None]]


def chain(
    interceptors: Sequence[ServerInterceptor], call: CallContext, last: ServerProceed
) -> ServerProceed:
    """``last`` (the handler) behind ``interceptors``, the first outermost."""
    proceed = last
    for interceptor in reversed(interceptors):
        proceed = partial(interceptor, call, proceed)
    return proceed
