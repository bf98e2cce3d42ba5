"""Your own services on muxs's server: ``HostedService`` says what each method needs.

``muxs.serve(services=[...])`` and ``build_server(..., services=[...])`` take betterproto2 service
bases' subclasses, or any grpclib service (an object with ``__mapping__``), either bare or in a
``HostedService``. A bare service declares no scope: while auth is on, every call to it is
refused with PERMISSION_DENIED, as a muxs method without a scope would be. ``muxs serve
--services module:factory`` (the ``services`` setting) hosts what ``factory()`` returns.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Union

from muxs.errors import ConfigError

if TYPE_CHECKING:
    from muxs._internals import IServable

log = logging.getLogger(__name__)

#: What ``services=`` takes: a service, or a service with its scopes and descriptors.
ServiceLike = Union["IServable", "HostedService"]


@dataclass(frozen=True)
class HostedService:
    """A service of yours, with the bearer-token scope each of its methods needs.

    ``scopes`` maps a method's proto name (``"Get"``) to its scope; ``scope`` is the scope of
    every other method; ``public`` names methods anyone may call (no token). A method none of
    them covers is refused while auth is on. ``descriptor_set`` (a ``FileDescriptorSet``, as
    ``protoc --descriptor_set_out --include_imports`` writes it: its bytes or its path) lets
    server reflection describe the service.
    """

    service: IServable
    scopes: Mapping[str, str] = field(default_factory=dict)
    scope: str | None = None
    public: Collection[str] = ()
    descriptor_set: bytes | str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        methods = set(self.methods().values())
        unknown = sorted((set(self.scopes) | set(self.public)) - methods)
        if unknown:
            raise ConfigError(
                "services",
                f"{self.name} has no method {', '.join(unknown)} "
                f"(it has {', '.join(sorted(methods))})",
            )
        both = sorted(set(self.scopes) & set(self.public))
        if both:
            raise ConfigError(
                "services", f"{self.name}: {', '.join(both)} cannot be public and need a scope"
            )

    @property
    def name(self) -> str:
        """The service's full name (``orders.Orders``)."""
        return next(iter(self.service.__mapping__())).split("/")[1]

    def methods(self) -> dict[str, str]:
        """Each method's path (``/orders.Orders/Get``) and name (``Get``)."""
        return {path: path.rsplit("/", 1)[1] for path in self.service.__mapping__()}

    def method_scopes(self) -> dict[str, str | None]:
        """The scope each method's path needs (None: public); methods without one left out."""
        declared: dict[str, str | None] = {}
        for path, name in self.methods().items():
            if name in self.public:
                declared[path] = None
            elif name in self.scopes:
                declared[path] = self.scopes[name]
            elif self.scope is not None:
                declared[path] = self.scope
        return declared

    def descriptors(self) -> bytes | None:
        """The descriptor set's bytes (``ConfigError`` if its file cannot be read)."""
        if self.descriptor_set is None or isinstance(self.descriptor_set, bytes):
            return self.descriptor_set
        try:
            return Path(self.descriptor_set).read_bytes()
        except OSError as exc:
            raise ConfigError(
                "services", f"cannot read the descriptor set of {self.name}: {exc.strerror}"
            ) from None


@dataclass(frozen=True)
class Hosting:
    """What the server hosts besides health and reflection, and what auth and reflection
    need to know about it."""

    services: list[IServable]
    scopes: dict[str, str | None]
    descriptor_sets: list[bytes]

    @classmethod
    def of(cls, builtin: Sequence[IServable], own: Sequence[ServiceLike]) -> Hosting:
        """muxs's ``builtin`` services and the user's ``own`` (``ConfigError`` on a clash)."""
        wrapped = [s if isinstance(s, HostedService) else HostedService(s) for s in own]
        services = [*builtin, *(hosted.service for hosted in wrapped)]
        seen: set[str] = set()
        for service in services:
            for path in service.__mapping__():
                if path in seen:
                    raise ConfigError("services", f"two hosted services both serve {path}")
                seen.add(path)
        scopes: dict[str, str | None] = {}
        descriptor_sets = []
        for hosted in wrapped:
            scopes.update(hosted.method_scopes())
            descriptors = hosted.descriptors()
            if descriptors is not None:
                descriptor_sets.append(descriptors)
        return cls(services, scopes, descriptor_sets)


def load_services(import_path: str) -> list[ServiceLike]:
    """What the factory ``module:factory`` returns (the ``services`` setting); ``ConfigError``
    naming what went wrong (the module's own exceptions are logged with their traceback)."""
    module_name, _, factory_name = import_path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError("services", f"cannot import {module_name}: {exc}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ConfigError("services", f"{module_name} has no callable {factory_name}")
    try:
        services = factory()
    except Exception as exc:
        log.exception("%s() failed", import_path)
        raise ConfigError("services", f"{import_path}() failed: {exc!r}") from None
    if not isinstance(services, list | tuple) or not all(
        isinstance(s, HostedService) or hasattr(s, "__mapping__") for s in services
    ):
        raise ConfigError(
            "services", f"{import_path}() must return a list of services (HostedService or grpclib)"
        )
    return list(services)
