"""Authentication and authorization: bearer tokens with per-method scopes, and who is calling.

Server side, ``muxs.server.verification.authenticator`` checks every call before its handler
runs (called by the call wrapper of ``muxs.server.hooks``); handlers and logs read the caller
with ``current_identity()``.
Client side, ``ClientCredentials`` fetches OAuth 2.0 tokens for
``muxs.Client(token_provider=...)`` (extra ``muxs[oauth]``).

This package holds the client side and the names both sides share; verification
(``muxs.server.verification``: PyJWT, cryptography) is the server's, never imported by the SDK
(tests/test_lazy_imports.py).
"""

from muxs.auth.bearer import TokenProvider
from muxs.auth.client_credentials import ClientCredentials
from muxs.auth.identity import Identity, current_identity
from muxs.auth.scopes import FILES_READ, FILES_WRITE, GREETER, SCOPES, required_scope

__all__ = [
    "FILES_READ",
    "FILES_WRITE",
    "GREETER",
    "SCOPES",
    "ClientCredentials",
    "Identity",
    "TokenProvider",
    "current_identity",
    "required_scope",
]
