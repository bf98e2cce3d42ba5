"""The gRPC services muxs hosts: hand-written handlers over the generated bases."""

from muxs.server.services.files import FileControllerService
from muxs.server.services.greeter import GreeterService

__all__ = ["FileControllerService", "GreeterService"]
