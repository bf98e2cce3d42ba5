"""muxs: a typed, async gRPC service (Greeter and FileController) and its SDK."""

from muxs.api import Content, FileInfo, Files, HelloReply, HelloRequest, Number, Status
from muxs.client import Client
from muxs.errors import ConfigError, MuxsError, RpcError, StatusCode, TokenError
from muxs.server import RunningServer, build_server, serve
from muxs.settings import ServerSettings
from muxs.sync import SyncClient

__all__ = [
    "Client",
    "ConfigError",
    "Content",
    "FileInfo",
    "Files",
    "HelloReply",
    "HelloRequest",
    "MuxsError",
    "Number",
    "RpcError",
    "RunningServer",
    "ServerSettings",
    "Status",
    "StatusCode",
    "SyncClient",
    "TokenError",
    "build_server",
    "serve",
]
