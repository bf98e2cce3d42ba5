"""Client-side call plumbing for every gRPC cardinality, over a grpclib ``Channel``.

Every kind of call goes through one path (``Caller._attempts_of``; a unary call through
``Caller._unary_attempts``, the same path without an async generator, its request sent and
its reply received in one step by ``muxs._internals.exchange``): it makes the call's
attempts (``muxs.retries.Attempts``: transparent retries, a ``RetryPolicy``'s,
``wait_for_ready``) until one succeeds or the call is committed (gRFC A6: the server's
response headers arrived, or the requests outgrew what ``KeptRequests`` keeps to send them
again), translates grpclib and transport errors to ``RpcError``
(``muxs.errors.translated``, in ``_Outcome``) and lets an exception raised by the caller's own
request iterator through unchanged and at once (grpclib's generated stubs run that
iterator in a background task and lose its error until the deadline). A call's own
``compression=`` overrides the client's (``muxs.call_compression.compressing``).

A call sends the client-wide metadata merged with its own (``muxs.metadata``), runs behind
the client's interceptors (``muxs.interceptors``) when it has any, and records the server's
headers, trailers and status on its ``CallInfo`` (``_Outcome``) however it ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from types import TracebackType
from typing import Any, Generic, Self, TypeAlias, TypeVar

from grpclib.client import Channel
from grpclib.client import Stream as GrpcStream
from grpclib.const import Cardinality
from h2.exceptions import StreamClosedError

from muxs import interceptors
from muxs._internals import SHORT_READ, end_requests_unsent, exchange, sent_request_stream
from muxs.call_compression import (
    USE_CLIENT_DEFAULT,
    UseClientDefault,
    checked_compression,
    compressing,
)
from muxs.errors import Metadata, RpcError, StatusCode, translated
from muxs.interceptors import CallKind, ClientCall, Interceptor
from muxs.metadata import CallInfo, MetadataLike, checked, merged
from muxs.retries import Attempts, RetryPolicy, unprocessed

Request = TypeVar("Request")
Reply = TypeVar("Reply")
Result = TypeVar("Result")

Requests = Iterable[Request] | AsyncIterable[Request]
#: A call's ``compression=``: an encoding, None (or ``identity``) for none, or the client's.
Compression: TypeAlias = str | UseClientDefault | None


class RequestsFailed(Exception):
    """The caller's request iterator raised; the original error is ``__cause__``."""


async def iterate(requests: Requests[Request]) -> AsyncIterator[Request]:
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request


#: The most request bytes a call that streams them keeps to send them again on a retry
#: (grpc's per-RPC retry buffer); past it the call is committed to its attempt.
RETRY_BUFFER_BYTES = 256 * 1024


class _End:
    """What ``KeptRequests`` pulls past the caller's last request."""


_END = _End()


class _Orphaned(Exception):
    """Raised to the sender of an ended attempt once it has pulled a request (``release``):
    that request is the next attempt's."""


class KeptRequests(Generic[Request]):
    """The requests of a call that streams them, kept so that a retry sends them again:
    each attempt's sender asks for them by index (``get``), and pulls the caller's iterator
    itself for one not yet pulled.

    Keeping stops once they outgrow ``limit`` bytes (``_held_size``), and then the call is
    ``committed``: no further attempt may start. A sender is never cancelled inside a pull
    (that would end the caller's iterator): an attempt that ends meanwhile leaves its sender
    to finish the pull for the next attempt (``release``); ``close`` cancels it once the
    call has ended.
    """

    def __init__(self, requests: Requests[Request], limit: int = RETRY_BUFFER_BYTES) -> None:
        self._iterator = aiter(iterate(requests))
        self._kept: list[Request] = []
        self._room = limit
        self.committed = False
        #: The sender pulling the caller's iterator now; the one among them whose attempt
        #: has ended; what it pulls, for the sender waiting for it; what it pulled and the
        #: next attempt has not asked for (unless kept).
        self._puller: asyncio.Task[Any] | None = None
        self._orphan: asyncio.Task[Any] | None = None
        self._handover: asyncio.Future[Request | _End] | None = None
        self._unkept: asyncio.Future[Request | _End] | None = None

    async def get(self, index: int) -> Request | _End:
        """The ``index``-th request (``_END`` past the last); ``RequestsFailed`` if the
        caller's iterator raises."""
        if index < len(self._kept):
            return self._kept[index]
        if self._orphan is not None:  # an ended attempt's sender is pulling it
            if self._handover is None:
                self._handover = asyncio.get_running_loop().create_future()
            handover = self._handover
            await asyncio.wait({handover})  # leaves the handover as it is if cancelled
            return handover.result()
        if self._unkept is not None:
            unkept, self._unkept = self._unkept, None
            return unkept.result()
        puller = self._puller = asyncio.current_task()
        pulled: asyncio.Future[Request | _End] = asyncio.get_running_loop().create_future()
        try:
            pulled.set_result(await _pull(self._iterator))
        except RequestsFailed as failed:
            pulled.set_exception(failed)
        finally:
            self._puller = None
        kept = pulled.exception() is None and self._keep(pulled.result())
        if puller is not self._orphan:
            return pulled.result()
        self._orphan = None
        if self._handover is not None:
            _settle(self._handover, pulled)
            self._handover = None
        elif not kept:
            self._unkept = pulled
        raise _Orphaned

    def _keep(self, request: Request | _End) -> bool:
        """Keep ``request`` if it fits, else commit the call; whether it was kept."""
        if self.committed or isinstance(request, _End):
            return False
        size = _held_size(request)
        if size > self._room:
            self.committed = True
            return False
        self._kept.append(request)
        self._room -= size
        return True

    def release(self, sender: asyncio.Task[Any]) -> bool:
        """Whether the sender of an ended attempt may be cancelled: not inside a pull, which
        it then finishes for the next attempt (and sends nothing more)."""
        if sender is not self._puller:
            return True
        self._orphan = sender
        return False

    async def close(self) -> None:
        """Cancel a pull left unfinished, once the call has ended."""
        await _stop(self._orphan)
        if self._handover is not None:
            self._handover.cancel()


def _settle(future: asyncio.Future[Result], like: asyncio.Future[Result]) -> None:
    """Settle ``future`` as ``like`` (done) was."""
    error = like.exception()
    if error is None:
        future.set_result(like.result())
    else:
        future.set_exception(error)


async def _pull(iterator: AsyncIterator[Request]) -> Request | _End:
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END
    except Exception as exc:
        raise RequestsFailed from exc


def _held_size(value: Any) -> int:
    """About the bytes a request message holds: its strings and bytes by their length, 8 for
    any other field, nested messages and lists summed. Encoding it to count exactly costs
    betterproto2 far more (``bytes(message)``: about 100 µs for a HelloRequest, 2 µs here)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list):
        return sum(_held_size(item) for item in value)
    names = _field_names(type(value))
    if names is None:
        return 8
    return sum(8 + _held_size(getattr(value, name)) for name in names)


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(kind: type) -> tuple[str, ...] | None:
    """The fields of a message type (a dataclass, as betterproto2's are); None: not one."""
    if kind not in _FIELD_NAMES:
        fields = dataclasses.fields(kind) if dataclasses.is_dataclass(kind) else None
        _FIELD_NAMES[kind] = None if fields is None else tuple(field.name for field in fields)
    return _FIELD_NAMES[kind]


async def _send_all(stream: GrpcStream[Request, Any], requests: KeptRequests[Request]) -> None:
    """Send every request, then end the request stream; stop early if the server has closed
    the call (its status arrives with the replies)."""
    sent = 0
    try:
        while not isinstance(request := await requests.get(sent), _End):
            await stream.send_message(request)
            sent += 1
        await stream.end()
    except (StreamClosedError, _Orphaned):
        return


class ReplyStream(AsyncIterator[Reply]):
    """The replies of a streaming call, as they arrive.

    Iterate with ``async for``. Leaving ``async with`` (or calling ``aclose``) before the
    end cancels the call, which cancels the server's handler.
    """

    def __init__(self, replies: AsyncIterator[Reply]) -> None:
        self._replies = replies

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Reply:
        return await anext(self._replies)

    async def aclose(self) -> None:
        """Cancel the call if it is still running."""
        await self._replies.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Outcome:
    """Translates an attempt's grpclib and transport errors to ``RpcError``
    (``muxs.errors.translated``) and records how it ended on its ``CallInfo``: the server's
    headers and trailers, and the status; an ``RpcError`` gets the same headers and
    trailers."""

    def __init__(
        self, info: CallInfo, target: str, refused_by_goaway: Callable[[Any], bool]
    ) -> None:
        self.info = info
        self.stream: GrpcStream[Any, Any] | None = None
        self._target = target
        self._refused_by_goaway = refused_by_goaway

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, RpcError):
            error = translated(exc, self._target)
            if error is not None:
                error.__cause__ = exc  # what _record reads (``unprocessed``)
                self._record(error)
                raise error from exc
        self._record(exc)

    def _record(self, exc: BaseException | None) -> None:
        info = self.info
        if self.stream is not None:
            info.headers = _received(self.stream.initial_metadata, info.headers)
            info.trailers = _received(self.stream.trailing_metadata, info.trailers)
        if exc is None:
            info.status = StatusCode.OK
        elif isinstance(exc, RpcError):
            info.status = exc.status
            exc.headers, exc.trailers = info.headers, info.trailers
            exc.unprocessed = unprocessed(exc, self.stream, self._refused_by_goaway)
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            info.status = StatusCode.CANCELLED


def _received(metadata: Mapping[str, Any] | None, recorded: Metadata) -> Metadata:
    """``metadata`` as recorded on a ``CallInfo`` (``recorded`` kept when both are empty)."""
    if metadata:
        return Metadata(metadata.items())
    return Metadata() if len(recorded) else recorded


class Caller:
    """Opens calls on one channel with a default timeout, client-wide metadata and
    interceptors."""

    def __init__(
        self,
        channel: Channel,
        target: str,
        timeout: float | None,
        *,
        metadata: MetadataLike | None = None,
        interceptors: Sequence[Interceptor] = (),
        retry_policy: RetryPolicy | None = None,
        method_retry_policies: Mapping[str, RetryPolicy | None] | None = None,
        wait_for_ready: bool = False,
    ) -> None:
        self.channel = channel
        self.target = target
        self.timeout = timeout
        self._metadata = checked(metadata)
        self._interceptors = tuple(interceptors)
        self._retry_policy = retry_policy
        self._method_retry_policies = dict(method_retry_policies or {})
        self._wait_for_ready = wait_for_ready
        refused_by_goaway = getattr(channel, "refused_by_goaway", None)
        self._refused_by_goaway: Callable[[Any], bool] = refused_by_goaway or (lambda _: False)

    def _attempts(self, call: ClientCall) -> Attempts:
        """The attempts of ``call``: its method's retry policy, else the client's; a call
        the server never processed is sent again once per server (``RoundRobin.addresses``)."""
        policy = self._method_retry_policies.get(call.method, self._retry_policy)
        return Attempts(
            call.timeout,
            policy,
            wait_for_ready=call.wait_for_ready,
            transparent_retries=len(getattr(self.channel, "addresses", ())) or 1,
        )

    def _outcome(self, call: ClientCall) -> _Outcome:
        return _Outcome(call.info, self.target, self._refused_by_goaway)

    def call(
        self,
        path: str,
        kind: CallKind,
        timeout: float | None,
        metadata: MetadataLike | None,
        info: CallInfo | None,
    ) -> ClientCall:
        """A new call's description, its metadata checked (``ConfigError``)."""
        return ClientCall(
            path,
            kind,
            merged(self._metadata, checked(metadata)),
            self.timeout if timeout is None else timeout,
            CallInfo() if info is None else info,
            target=self.target,
            wait_for_ready=self._wait_for_ready,
        )

    def _open(
        self,
        call: ClientCall,
        cardinality: Cardinality,
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
    ) -> GrpcStream[Request, Reply]:
        return self.channel.request(
            call.method,
            cardinality,
            request_type,
            reply_type,
            timeout=timeout,
            metadata=checked(call.metadata) if self._interceptors else call.metadata,
        )

    async def unary_unary(
        self,
        path: str,
        request: Request,
        reply_type: type[Reply],
        timeout: float | None,
        metadata: MetadataLike | None = None,
        info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Reply:
        call = self.call(path, "unary", timeout, metadata, info)
        compression = _checked(compression)
        if not self._interceptors:
            return _required(await self._unary_attempts(call, request, reply_type, compression))

        async def send(call: ClientCall) -> Reply:
            return _required(await self._unary_attempts(call, request, reply_type, compression))

        return await interceptors.unary(self._interceptors, call, send)

    def unary_stream(
        self,
        path: str,
        request: Request,
        reply_type: type[Reply],
        timeout: float | None,
        metadata: MetadataLike | None = None,
        info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> ReplyStream[Reply]:
        call = self.call(path, "server_stream", timeout, metadata, info)
        compression = _checked(compression)
        return self._stream(
            call,
            lambda call: self._attempts_of(
                call, Cardinality.UNARY_STREAM, type(request), reply_type, request, compression
            ),
        )

    async def stream_unary(
        self,
        path: str,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
        metadata: MetadataLike | None = None,
        info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> Reply:
        call = self.call(path, "client_stream", timeout, metadata, info)
        compression = _checked(compression)
        stream = self._stream(
            call,
            lambda call: self._attempts_of(
                call,
                Cardinality.STREAM_UNARY,
                request_type,
                reply_type,
                KeptRequests(requests),
                compression,
            ),
        )
        return _required(await _single(stream))  # to the end: the trailers are checked

    def stream_stream(
        self,
        path: str,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
        metadata: MetadataLike | None = None,
        info: CallInfo | None = None,
        compression: Compression = USE_CLIENT_DEFAULT,
    ) -> ReplyStream[Reply]:
        call = self.call(path, "bidi_stream", timeout, metadata, info)
        compression = _checked(compression)
        return self._stream(
            call,
            lambda call: self._attempts_of(
                call,
                Cardinality.STREAM_STREAM,
                request_type,
                reply_type,
                KeptRequests(requests),
                compression,
            ),
        )

    def _stream(
        self, call: ClientCall, open_call: Callable[[ClientCall], AsyncGenerator[Reply, None]]
    ) -> ReplyStream[Reply]:
        if not self._interceptors:
            return ReplyStream(open_call(call))
        return ReplyStream(interceptors.streaming(self._interceptors, call, open_call))

    async def _attempts_of(
        self,
        call: ClientCall,
        cardinality: Cardinality,
        request_type: type[Request],
        reply_type: type[Reply],
        sent: Request | KeptRequests[Request],
        compression: Compression,
    ) -> AsyncGenerator[Reply, None]:
        """The replies of ``call``, of every kind, over as many attempts as it may make.

        ``sent`` is the request, or the requests of a call that streams them, sent from a
        background task while the replies are yielded: receiving never waits for the
        caller's request iterator, so the deadline bounds a call whose iterator stalls, and
        a reply or error the server sends early arrives. A failed attempt is sent again
        (``muxs.retries.Attempts``) unless the call is committed: the server's response
        headers arrived (gRFC A6), or the requests outgrew ``KeptRequests``.
        """
        attempts = self._attempts(call)
        requests = sent if isinstance(sent, KeptRequests) else None
        try:
            while True:
                try:
                    with self._outcome(call) as outcome:
                        opened = self._open(
                            call, cardinality, request_type, reply_type, attempts.remaining()
                        )
                        outcome.stream = opened
                        async with opened as stream:
                            with compressing(compression):
                                await stream.send_request()
                            if isinstance(sent, KeptRequests):
                                async with aclosing(_streamed(stream, sent)) as replies:
                                    async for reply in replies:
                                        yield reply
                            else:
                                await stream.send_message(sent, end=True)
                                while (received := await _recv(stream)) is not None:
                                    yield received
                                    if not cardinality.server_streaming:
                                        break  # one reply: grpclib checks the trailers next
                    return
                except RpcError as error:
                    if _headers_arrived(outcome.stream) or (
                        requests is not None and requests.committed
                    ):
                        raise
                    await attempts.before_retry(error)
        except RequestsFailed as failed:
            raise _cause(failed) from None
        finally:
            if requests is not None:
                await requests.close()

    async def _unary_attempts(
        self, call: ClientCall, request: Request, reply_type: type[Reply], compression: Compression
    ) -> Reply | None:
        """The reply of a unary ``call`` (None: none), over as many attempts as it may make:
        ``_attempts_of`` for one request and one reply, without an async generator."""
        attempts = self._attempts(call)
        while True:
            try:
                with self._outcome(call) as outcome:
                    opened = self._open(
                        call,
                        Cardinality.UNARY_UNARY,
                        type(request),
                        reply_type,
                        attempts.remaining(),
                    )
                    outcome.stream = opened
                    async with opened as stream:
                        if compression is USE_CLIENT_DEFAULT:  # the common case, in short
                            return await _recv(stream, exchange(stream, request))
                        with compressing(compression):
                            return await _recv(stream, exchange(stream, request))
            except RpcError as error:
                if _headers_arrived(outcome.stream):
                    raise
                await attempts.before_retry(error)


async def _recv(
    stream: GrpcStream[Any, Reply], receiving: Awaitable[Reply | None] | None = None
) -> Reply | None:
    """The next reply (None at the end), or what ``receiving`` returns; if the server's
    trailers cut a reply short, as a server does when a call ends mid-message (a deadline
    passed), their status is raised."""
    try:
        return await (stream.recv_message() if receiving is None else receiving)
    except SHORT_READ:  # the stream ended inside a message
        await stream.recv_trailing_metadata()  # raises GRPCError unless the status is OK
        raise RpcError(
            StatusCode.INTERNAL, "the server ended the call in the middle of a reply"
        ) from None


def _headers_arrived(stream: GrpcStream[Any, Any] | None) -> bool:
    """Whether the server's response headers (not a trailers-only response) reached grpclib's
    client ``stream``: they commit the call (gRFC A6), however far it was read."""
    sent = None if stream is None else sent_request_stream(stream)
    headers = None if sent is None else sent.headers
    return headers is not None and all(name != "grpc-status" for name, _ in headers)


async def _streamed(
    stream: GrpcStream[Request, Reply], requests: KeptRequests[Request]
) -> AsyncGenerator[Reply, None]:
    """The replies of an attempt whose ``requests`` a background task sends meanwhile; the
    sender's error as soon as it fails. The call ends with the server's status, whether or not
    every request was sent: the sender of an ended attempt is stopped, unless it is inside a
    pull (``KeptRequests.release``)."""
    sender = asyncio.create_task(_send_all(stream, requests))
    try:
        while True:
            receive = _recv(stream)
            reply = await _or_fail(receive, sender)
            if reply is None:
                break
            yield reply
        if sender.done():
            await sender  # the requests' error, if they failed as the call ended
        end_requests_unsent(stream)  # the server may have ended the call before they did
    finally:
        if requests.release(sender):
            await _stop(sender)


async def _or_fail(
    receive: Coroutine[Any, Any, Result], sender: asyncio.Task[None] | None
) -> Result:
    """What ``receive`` returns, or the error of the task sending the requests as soon as it
    fails, whichever comes first."""
    if sender is not None and sender.done():
        if not sender.cancelled() and sender.exception() is not None:
            receive.close()
            sender.result()  # raises RequestsFailed (or the transport error)
        sender = None
    if sender is None:
        return await receive
    receiving = asyncio.ensure_future(receive)
    try:
        await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done() and not sender.cancelled() and sender.exception() is not None:
            sender.result()
        return await receiving
    finally:
        await _stop(receiving)


async def _stop(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended; its error, if any, was reported
    already."""
    if task is None:
        return
    if not task.done():  # waiting for a task already done would cost a turn of the loop
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # mark it retrieved


async def _single(replies: AsyncIterator[Reply]) -> Reply | None:
    """The first of ``replies`` (None: none), read to their end (the trailers are checked)."""
    first = None
    async for reply in replies:
        if first is None:
            first = reply
    return first


def _checked(compression: Compression) -> Compression:
    return (
        compression
        if isinstance(compression, UseClientDefault)
        else checked_compression(compression)
    )


def _required(reply: Reply | None) -> Reply:
    if reply is None:
        raise RpcError(StatusCode.INTERNAL, "the server ended the call without a reply")
    return reply


def _cause(failed: RequestsFailed) -> BaseException:
    assert failed.__cause__ is not None
    return failed.__cause__
