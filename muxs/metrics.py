"""Prometheus metrics, named and labelled as go-grpc-prometheus made conventional.

Every call series is labelled ``grpc_service``, ``grpc_method`` and ``grpc_type``
(``unary``, ``client_stream``, ``server_stream``, ``bidi_stream``):

- ``grpc_server_started_total``, ``grpc_server_handled_total`` (also by ``grpc_code``;
  a call cancelled by its client counts as ``CANCELLED``), ``grpc_server_handling_seconds``
  (a histogram), ``grpc_server_msg_received_total``, ``grpc_server_msg_sent_total``;
- ``muxs_calls_in_flight`` and ``muxs_file_bytes_written_total``;
- and the process, platform and garbage collector series of prometheus-client.

Needs the ``metrics`` extra (prometheus-client); only imported when metrics are on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from muxs.hooks import Call, CallObserver, Counted

LABELS = ("grpc_service", "grpc_method", "grpc_type")


def _labels(call: Call) -> tuple[str, str, str]:
    return call.service, call.method, call.kind


@dataclass(frozen=True)
class _Series:
    """One method's labelled series (``Counter.labels`` costs a lock and a lookup each time)."""

    started: Counter
    in_flight: Gauge
    seconds: Histogram
    counted: dict[Counted, Counter]


class Metrics(CallObserver):
    """Counts every call into its own registry, and serves it over HTTP once started."""

    counts_messages = True

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(GC_COLLECTOR)
        self._started = self._counter("grpc_server_started_total", "RPCs started on the server.")
        self._handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their status.",
            (*LABELS, "grpc_code"),
            registry=self.registry,
        )
        self._seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from a call's request headers to its end, in seconds.",
            LABELS,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "muxs_calls_in_flight", "Calls in flight.", LABELS, registry=self.registry
        )
        self._counted = {
            Counted.RECEIVED: self._counter(
                "grpc_server_msg_received_total", "Stream messages received by the server."
            ),
            Counted.SENT: self._counter(
                "grpc_server_msg_sent_total", "Stream messages sent by the server."
            ),
            Counted.BYTES_WRITTEN: self._counter(
                "muxs_file_bytes_written_total", "Bytes the FileController wrote to files."
            ),
        }
        self._by_method: dict[tuple[str, str, str], _Series] = {}
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def _counter(self, name: str, documentation: str) -> Counter:
        return Counter(name, documentation, LABELS, registry=self.registry)

    def started(self, call: Call) -> None:
        series = self._series(call)
        series.started.inc()
        series.in_flight.inc()

    def counted(self, call: Call, what: Counted, amount: int) -> None:
        self._series(call).counted[what].inc(amount)

    def finished(self, call: Call) -> None:
        assert call.status is not None
        series = self._series(call)
        series.in_flight.dec()
        series.seconds.observe(call.duration)
        self._handled.labels(*_labels(call), call.status.name).inc()

    def _series(self, call: Call) -> _Series:
        """The call's method's series, looked up once per method (messages count often)."""
        labels = _labels(call)
        series = self._by_method.get(labels)
        if series is None:
            series = self._by_method[labels] = _Series(
                started=self._started.labels(*labels),
                in_flight=self._in_flight.labels(*labels),
                seconds=self._seconds.labels(*labels),
                counted={what: counter.labels(*labels) for what, counter in self._counted.items()},
            )
        return series

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` from a thread; return the port (0 picks one)."""
        self._http = start_http_server(port, addr=host, registry=self.registry)
        return self._http[0].server_port

    def close(self) -> None:
        """Stop serving (blocks for up to half a second)."""
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join()
            self._http = None
