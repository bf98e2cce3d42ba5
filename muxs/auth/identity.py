"""Who is calling: set once per call by the server's auth listener, read anywhere in that call."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Identity:
    """The caller of the current call.

    ``subject`` and ``scopes`` come from a verified bearer token (None and empty when the
    call carried none: auth is off or the method is public); ``peer`` is the subject of the
    verified client certificate (mutual TLS), e.g. ``CN=alice,O=Example``.
    """

    subject: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    peer: str | None = None


#: The caller of a call with no token and no client certificate.
ANONYMOUS = Identity()


class InvalidToken(Exception):
    """A bearer token was refused; the message says why and is safe to send to the caller."""


_identity: ContextVar[Identity | None] = ContextVar("muxs_identity", default=None)


def current_identity() -> Identity | None:
    """The caller of the call being handled; None outside a call (or before auth ran)."""
    return _identity.get()


def set_identity(identity: Identity) -> None:
    """Record the caller for the rest of the current call (each call runs in its own task)."""
    _identity.set(identity)
