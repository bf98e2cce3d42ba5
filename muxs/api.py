"""The generated message types and service bases, re-exported under a stable name.

``generated/muxs_api`` is machine-written from ``proto/muxs.proto``; import from here.
"""

# Applied once, before any message is sent: what h2 does with each DATA frame it receives.
from muxs import frames  # noqa: F401
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
