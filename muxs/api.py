"""The generated message types and service bases, re-exported under a stable name.

``generated/muxs_api`` is machine-written from ``proto/muxs.proto``; import from here.
"""

import muxs.codec  # noqa: F401  (message encoding tuned once, before any message is sent)
from muxs_api.muxs import (
    Content,
    FileControllerBase,
    FileControllerStub,
    Files,
    GreeterBase,
    GreeterStub,
    HelloReply,
    HelloRequest,
    Number,
    Status,
)

__all__ = [
    "Content",
    "FileControllerBase",
    "FileControllerStub",
    "Files",
    "GreeterBase",
    "GreeterStub",
    "HelloReply",
    "HelloRequest",
    "Number",
    "Status",
]
