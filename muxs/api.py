"""The generated message types and service bases, re-exported under a stable name.

``generated/muxs_api`` is machine-written from ``proto/muxs.proto``; import from here.
"""

import muxs.encoding  # noqa: F401  (message encoding tuned once, before any message is sent)
from muxs_api.muxs import (
    Chunk,
    Content,
    FileControllerBase,
    FileControllerStub,
    FileInfo,
    Files,
    GreeterBase,
    GreeterStub,
    HelloReply,
    HelloRequest,
    ListRequest,
    Number,
    Status,
)

__all__ = [
    "Chunk",
    "Content",
    "FileControllerBase",
    "FileControllerStub",
    "FileInfo",
    "Files",
    "GreeterBase",
    "GreeterStub",
    "HelloReply",
    "HelloRequest",
    "ListRequest",
    "Number",
    "Status",
]
