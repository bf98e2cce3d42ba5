"""Tracing for ``muxs serve --otel`` (``ServerSettings.otel``): where the spans go.

If the application has set a global ``TracerProvider`` already (embedding muxs, or
``opentelemetry-instrument``), muxs's spans go to it. Otherwise muxs sets one up from the
standard variables: the resource from ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
(``service.name`` ``muxs`` when neither names the service), the exporters from
``OTEL_TRACES_EXPORTER`` (``otlp``, the default: OTLP over HTTP to
``OTEL_EXPORTER_OTLP_ENDPOINT``, which the exporter reads with its other ``OTEL_EXPORTER_OTLP_*``
variables; ``console``: stdout; ``none``), each behind a batching processor; and makes it the
global provider, so that the spans handlers start are exported too.
``OTEL_SDK_DISABLED=true`` turns every span off (the SDK's rule).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from muxs.errors import ConfigError
from muxs.server.interceptors import ServerInterceptor

log = logging.getLogger(__name__)

EXPORTERS = ("otlp", "console", "none")
#: The OTLP protocol muxs exports with (the exporter the ``otel`` extra installs).
OTLP_PROTOCOL = "http/protobuf"
DEFAULT_SERVICE_NAME = "muxs"


class Tracing:
    """The server's tracing interceptor and the provider its spans go to."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        from muxs.otel import server_interceptor

        provider = trace.get_tracer_provider()
        self._owned: TracerProvider | None = None
        if isinstance(provider, trace.ProxyTracerProvider):  # nobody has set one
            self._owned = provider = _provider(environ)
            trace.set_tracer_provider(provider)
            exporters = environ.get("OTEL_TRACES_EXPORTER", "otlp")
            log.info("tracing every call with OpenTelemetry (exporter: %s)", exporters)
        else:
            log.info("tracing every call with OpenTelemetry (the application's TracerProvider)")
        self.interceptor: ServerInterceptor = server_interceptor(provider)

    def flush(self) -> None:
        """Export the spans still batched (a worker process ends without running atexit)."""
        if self._owned is not None:
            self._owned.force_flush()


def _provider(environ: Mapping[str, str]) -> TracerProvider:
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for exporter in _exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters: list[SpanExporter] = []
    for name in filter(None, names):
        if name not in EXPORTERS:
            raise ConfigError(
                "otel", f"OTEL_TRACES_EXPORTER={name!r} is not one of {', '.join(EXPORTERS)}"
            )
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name == "otlp":
            exporters.append(_otlp(environ))
    return exporters


def _otlp(environ: Mapping[str, str]) -> SpanExporter:
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", OTLP_PROTOCOL
    )
    if protocol != OTLP_PROTOCOL:
        raise ConfigError(
            "otel", f"OTLP protocol {protocol!r}: muxs exports OTLP over {OTLP_PROTOCOL} only"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()
