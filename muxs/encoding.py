"""How messages are encoded: betterproto's codec, with one measured exception.

With the ``rust-codec`` extra, betterproto encodes and decodes every message in Rust: faster,
except for encoding a large ``bytes`` field (0.95 ms for a 64 KiB chunk against 0.056 ms in
betterproto's own Python; docs/PERFORMANCE.md). Messages that carry file data therefore
always encode in Python. Imported by ``muxs.api``, so it applies wherever muxs is used.
"""

from __future__ import annotations

from io import BytesIO

import betterproto

from muxs_api.muxs import Chunk

ENCODED_IN_PYTHON: tuple[type[betterproto.Message], ...] = (Chunk,)


def _python_bytes(message: betterproto.Message) -> bytes:
    """betterproto's pure-Python encoding (what ``bytes(message)`` is without the rust codec)."""
    with BytesIO() as stream:
        message.dump(stream)
        return stream.getvalue()


for _message_type in ENCODED_IN_PYTHON:
    setattr(_message_type, "__bytes__", _python_bytes)  # noqa: B010 (mypy: no method assignment)
