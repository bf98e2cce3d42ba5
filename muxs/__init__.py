"""muxs: a typed, async gRPC service (Greeter and FileController) and its SDK.

``import muxs`` loads the SDK only. The server's names (``serve``, ``build_server``,
``RunningServer``, ``ServerSettings``, ``HostedService``, ``CallContext``, ``ServerInterceptor``,
``ServerProceed``) are imported on first use, so a client never
loads the server stack, token verification or certificate checks.
"""

import importlib as _importlib
import typing as _typing

from muxs.api import Content, FileInfo, Files, HelloReply, HelloRequest, Number, Status
from muxs.client import Client
from muxs.errors import ConfigError, Metadata, MuxsError, RpcError, StatusCode, TokenError
from muxs.interceptors import ClientCall, Interceptor, Proceed
from muxs.metadata import CallInfo
from muxs.retries import RetryPolicy
from muxs.sync import SyncClient

#: The release; pyproject.toml reads it from here (``[tool.hatch.version]``).
__version__ = "0.3.0"

__all__ = [
    "CallContext",
    "CallInfo",
    "Client",
    "ClientCall",
    "ConfigError",
    "Content",
    "FileInfo",
    "Files",
    "HelloReply",
    "HelloRequest",
    "HostedService",
    "Interceptor",
    "Metadata",
    "MuxsError",
    "Number",
    "Proceed",
    "RetryPolicy",
    "RpcError",
    "RunningServer",
    "ServerInterceptor",
    "ServerProceed",
    "ServerSettings",
    "Status",
    "StatusCode",
    "SyncClient",
    "TokenError",
    "build_server",
    "serve",
]

#: Where each server name lives: imported by ``__getattr__`` when first used.
_SERVER_NAMES = {
    "RunningServer": "muxs.server.serving",
    "build_server": "muxs.server.serving",
    "serve": "muxs.server.serving",
    "ServerSettings": "muxs.server.settings",
    "HostedService": "muxs.server.hosting",
    "CallContext": "muxs.server.context",
    "ServerInterceptor": "muxs.server.interceptors",
    "ServerProceed": "muxs.server.interceptors",
}

if _typing.TYPE_CHECKING:
    # Type checkers see the real names (and no __getattr__, so a misspelt name is an error).
    from muxs.server.context import CallContext
    from muxs.server.hosting import HostedService
    from muxs.server.interceptors import ServerInterceptor, ServerProceed
    from muxs.server.serving import RunningServer, build_server, serve
    from muxs.server.settings import ServerSettings
else:

    def __getattr__(name: str) -> object:
        """Import a server name on first use (PEP 562) and keep it as a module attribute."""
        if name not in _SERVER_NAMES:
            raise AttributeError(f"module 'muxs' has no attribute {name!r}")
        value = getattr(_importlib.import_module(_SERVER_NAMES[name]), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SERVER_NAMES))
