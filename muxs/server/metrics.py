"""Prometheus metrics, named and labelled as go-grpc-prometheus made conventional.

Every call series is labelled ``grpc_service``, ``grpc_method`` and ``grpc_type``
(``unary``, ``client_stream``, ``server_stream``, ``bidi_stream``):

- ``grpc_server_started_total``, ``grpc_server_handled_total`` (also by ``grpc_code``;
  a call cancelled by its client counts as ``CANCELLED``), ``grpc_server_handling_seconds``
  (a histogram), ``grpc_server_msg_received_total``, ``grpc_server_msg_sent_total``;
- ``muxs_calls_in_flight`` and ``muxs_file_bytes_written_total``;
- and, from a single process, the process, platform and garbage collector series of
  prometheus-client.

With ``muxs serve --workers N`` the supervisor serves one endpoint for all its workers
(``WorkersMetrics``) through prometheus-client's multiprocess mode: each worker writes its
values to files in a directory private to the supervisor, which sums them when scraped. That
mode has no process series (they would describe the supervisor only) and no ``_created``.

Needs the ``metrics`` extra (prometheus-client); only imported when metrics are on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
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
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from muxs.server.context import CallContext
from muxs.server.hooks import CallObserver, Counted

LABELS = ("grpc_service", "grpc_method", "grpc_type")
#: Where prometheus-client's multiprocess mode keeps the values; read when it is imported.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _labels(call: CallContext) -> tuple[str, str, str]:
    return call.service, call.method, call.kind


@dataclass(frozen=True)
class _Series:
    """One method's labelled series (``Counter.labels`` costs a lock and a lookup each time)."""

    started: Counter
    in_flight: Gauge
    seconds: Histogram
    counted: dict[Counted, Counter]


class Endpoint:
    """``/metrics`` of one registry, served over HTTP from a thread once started."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port``; return the port (0 picks one)."""
        self._http = start_http_server(port, addr=host, registry=self._registry)
        return self._http[0].server_port

    def close(self) -> None:
        """Stop serving (blocks for up to half a second)."""
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join()
            self._http = None


class Metrics(CallObserver):
    """Counts every call into its own registry, which ``endpoint`` serves.

    A ``worker`` of ``muxs serve --workers N`` (started with ``MULTIPROCESS_DIR_ENV`` set)
    counts the same series into its files, for the supervisor's ``WorkersMetrics`` to serve.
    """

    counts_messages = True

    def __init__(self, *, worker: bool = False) -> None:
        self.registry = CollectorRegistry()
        self.endpoint = Endpoint(self.registry)
        if not worker:
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
            "muxs_calls_in_flight",
            "Calls in flight.",
            LABELS,
            registry=self.registry,
            multiprocess_mode="livesum",  # workers: the sum over those running
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

    def _counter(self, name: str, documentation: str) -> Counter:
        return Counter(name, documentation, LABELS, registry=self.registry)

    def started(self, call: CallContext) -> None:
        series = self._series(call)
        series.started.inc()
        series.in_flight.inc()

    def counted(self, call: CallContext, what: Counted, amount: int) -> None:
        self._series(call).counted[what].inc(amount)

    def finished(self, call: CallContext) -> None:
        assert call.status is not None
        series = self._series(call)
        series.in_flight.dec()
        series.seconds.observe(call.duration)
        self._handled.labels(*_labels(call), call.status.name).inc()

    def _series(self, call: CallContext) -> _Series:
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


class WorkersMetrics:
    """The supervisor's side of ``muxs serve --workers N --metrics-port P``: one endpoint that
    sums the series of every worker, those that exited included (their counts stay counted;
    their calls in flight no longer are).

    Created before the workers start: it makes a private directory and points
    ``MULTIPROCESS_DIR_ENV`` at it, so that the workers, which inherit the environment,
    write their values there. ``close`` removes the directory.
    """

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="muxs-metrics-"))
        self._previous = os.environ.get(MULTIPROCESS_DIR_ENV)
        os.environ[MULTIPROCESS_DIR_ENV] = str(self.directory)
        registry = CollectorRegistry()
        # prometheus-client's multiprocess module has no type hints.
        MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        self.endpoint = Endpoint(registry)

    def worker_exited(self, pid: int) -> None:
        """Forget the calls in flight of the worker ``pid``, which exited."""
        mark_process_dead(pid, str(self.directory))  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Stop serving, restore the environment and remove the directory."""
        self.endpoint.close()
        if self._previous is None:
            os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        else:
            os.environ[MULTIPROCESS_DIR_ENV] = self._previous
        shutil.rmtree(self.directory, ignore_errors=True)
