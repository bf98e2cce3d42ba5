"""Reply messages compressed (``ServerSettings.compression``) for clients that accept it.

A call's replies are compressed when the server is configured with an encoding and the
client lists it in ``grpc-accept-encoding`` (grpcio and grpc-js list gzip and deflate; a
client that sends no such header gets plain replies). Each message is compressed on its own
when that gains (``muxs.compression.CompressingWriter``); the response headers say
``grpc-encoding``.
"""

from __future__ import annotations

from collections.abc import Collection


def reply_encoding(configured: str, headers: Collection[tuple[str, str]]) -> str | None:
    """The encoding of a call's replies: ``configured`` if its client accepts it, else none."""
    if configured == "none":
        return None
    accepted = {
        encoding.strip()
        for name, value in headers
        if name == "grpc-accept-encoding"
        for encoding in value.split(",")
    }
    return configured if configured in accepted else None
