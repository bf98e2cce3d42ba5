"""The generated message types and service bases, re-exported under a stable name.

``generated/muxs_api`` is machine-written from ``proto/muxs.proto``; import from here.
"""

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
