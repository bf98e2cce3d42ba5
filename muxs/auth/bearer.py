"""The SDK's side of bearer tokens: attach one to every call a channel opens."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from grpclib.events import SendRequest

from muxs.errors import ConfigError
from muxs.tls import is_loopback

TokenProvider = Callable[[], str | Awaitable[str]]
"""Returns the token to send (sync or async); called before every call."""


def bearer_listener(
    token: str | None = None, token_provider: TokenProvider | None = None
) -> Callable[[SendRequest], Coroutine[Any, Any, None]] | None:
    """A ``SendRequest`` listener adding ``authorization: Bearer <token>`` (None: no token)."""
    if token is not None and token_provider is not None:
        raise ConfigError("token", "give token or token_provider, not both")
    if token is None and token_provider is None:
        return None
    if token is not None and not token.strip():
        raise ConfigError("token", "is empty")

    async def add_token(event: SendRequest) -> None:
        value = token if token_provider is None else token_provider()
        if inspect.isawaitable(value):
            value = await value
        event.metadata["authorization"] = f"Bearer {value}"

    return add_token


def check_token_transport(host: str, *, tls: bool, allow_insecure_token: bool) -> None:
    """Refuse to send tokens in plaintext to another machine, unless told to."""
    if not tls and not is_loopback(host) and not allow_insecure_token:
        raise ConfigError(
            "token",
            f"refusing to send a token in plaintext to {host}: use tls "
            "(or allow_insecure_token=True)",
        )
