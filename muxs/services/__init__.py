"""The gRPC services muxs hosts: hand-written handlers over the generated bases."""

from muxs.services.files import FileControllerService
from muxs.services.greeter import GreeterService

__all__ = ["FileControllerService", "GreeterService"]
