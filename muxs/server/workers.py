"""``muxs serve --workers N``: N server processes on one port, supervised by this one.

The supervisor removes stale temp files once, then opens N listening sockets on the same
port with SO_REUSEPORT (the kernel spreads new connections over them) and starts a worker
process for each, which serves its socket. The supervisor keeps every socket open, so
connections that arrive while a worker restarts wait in its backlog instead of being
refused. A worker that dies is restarted, after a pause that grows while workers keep
dying young. SIGTERM or SIGINT is passed on to every worker, which drains and exits; the
supervisor closes its sockets (new connections are refused once the workers have closed
theirs too) and waits for them (killing any still running ``STOP_SLACK`` seconds after their
``shutdown_grace`` is over) and returns.

With ``metrics_port``, the supervisor serves ``/metrics`` for all its workers
(``muxs.server.metrics.WorkersMetrics``); the workers serve none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from muxs.server.open_files import raise_open_files_limit
from muxs.server.serving import bind, remove_stale_temp_files
from muxs.server.settings import ServerSettings
from muxs.server.storage import LocalRoot, Root

if TYPE_CHECKING:
    from muxs.server.metrics import WorkersMetrics

log = logging.getLogger(__name__)

#: Runs one server process on the socket until SIGTERM/SIGINT (``muxs.cli.serve`` gives it).
Worker = Callable[[ServerSettings, socket.socket], None]

# Seconds a stopping worker gets past its shutdown_grace (to cancel what still runs, close
# its connections and exit) before it is killed.
STOP_SLACK = 10.0
BACKLOG = 1024
YOUNG = 5.0  # a worker that dies sooner than this after its start is restarted later...
MAX_RESTART_DELAY = 5.0  # ... each time twice as late, up to this many seconds


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets listening on one port (port 0: the same ephemeral one for all)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = bind(host, sockets[0].getsockname()[1] if sockets else port, reuse_port=True)
            sockets.append(sock)
            sock.listen(BACKLOG)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _worker_main(worker: Worker, settings: ServerSettings, sock: socket.socket) -> None:
    """A worker process: out of the terminal's process group (the supervisor relays
    signals), and stopped like by SIGTERM if the supervisor dies."""
    os.setpgrp()
    parent = multiprocessing.parent_process()
    if parent is not None:
        sentinel = parent.sentinel

        def stop_with_parent() -> None:
            multiprocessing.connection.wait([sentinel])
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=stop_with_parent, name="muxs-parent", daemon=True).start()
    worker(settings, sock)


@dataclass
class _Slot:
    """One worker's place: its socket, its current process and restart bookkeeping."""

    index: int
    sock: socket.socket
    process: BaseProcess | None = None
    started: float = 0.0
    delay: float = 0.0
    restart: asyncio.TimerHandle | None = field(default=None, repr=False)


class Supervisor:
    """Starts a worker per socket, restarts the dead, and stops them all on a signal."""

    def __init__(
        self,
        settings: ServerSettings,
        worker: Worker,
        sockets: list[socket.socket],
        *,
        on_exit: Callable[[int], None] = lambda pid: None,
    ):
        self._settings = settings
        self._worker = worker
        self._on_exit = on_exit  # told the pid of each worker process that exited
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot(index, sock) for index, sock in enumerate(sockets, 1)]
        # A signal number, or a worker process that exited.
        self._events: asyncio.Queue[int | BaseProcess] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()

    def _start(self, slot: _Slot) -> None:
        slot.restart = None
        process = self._context.Process(
            target=_worker_main,
            args=(self._worker, self._settings, slot.sock),
            name=f"worker-{slot.index}",
        )
        process.start()
        slot.process, slot.started = process, self._loop.time()
        self._loop.add_reader(process.sentinel, self._exited, slot)
        log.info("worker %d started (pid %s)", slot.index, process.pid)

    def _exited(self, slot: _Slot) -> None:
        assert slot.process is not None
        self._loop.remove_reader(slot.process.sentinel)
        slot.process.join()
        if slot.process.pid is not None:
            self._on_exit(slot.process.pid)
        self._events.put_nowait(slot.process)

    def _signal(self, signum: int) -> None:
        self._events.put_nowait(signum)

    def _running(self) -> list[BaseProcess]:
        return [
            s.process for s in self._slots if s.process is not None and s.process.exitcode is None
        ]

    async def run(self) -> None:
        """Supervise until SIGTERM or SIGINT, then stop every worker."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._signal, signum)
        for slot in self._slots:
            self._start(slot)
        while not isinstance(event := await self._events.get(), int):
            self._schedule_restart(next(s for s in self._slots if s.process is event))
        await self._stop(event)

    def _schedule_restart(self, slot: _Slot) -> None:
        assert slot.process is not None
        young = self._loop.time() - slot.started < YOUNG
        slot.delay = min(MAX_RESTART_DELAY, max(0.1, slot.delay * 2)) if young else 0.0
        log.warning(
            "worker %d (pid %s) exited with code %s; restarting it in %.1f s",
            slot.index,
            slot.process.pid,
            slot.process.exitcode,
            slot.delay,
        )
        slot.restart = self._loop.call_later(slot.delay, self._start, slot)

    async def _stop(self, signum: int) -> None:
        log.info("muxs stopping %d worker(s)", len(self._running()))
        for slot in self._slots:
            if slot.restart is not None:
                slot.restart.cancel()
        allowed = self._settings.shutdown_grace + STOP_SLACK
        deadline = self._loop.time() + allowed
        self._relay(signum)
        for slot in self._slots:
            # The workers stop accepting as they drain: with no copy left open here, a new
            # connection is refused at once (and sent elsewhere by its client) instead of
            # waiting in a backlog nobody reads until the supervisor exits.
            slot.sock.close()
        while self._running():
            try:
                async with asyncio.timeout_at(deadline):
                    event = await self._events.get()
            except TimeoutError:
                for process in self._running():
                    log.warning("%s did not stop in %g s: killing it", process.name, allowed)
                    process.kill()
                deadline = float("inf")
                continue
            if isinstance(event, int):
                self._relay(event)
            elif event.exitcode != 0:
                log.warning("%s exited with code %s while stopping", event.name, event.exitcode)

    def _relay(self, signum: int) -> None:
        for process in self._running():
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)


@contextmanager
def _metrics(settings: ServerSettings) -> Iterator[WorkersMetrics | None]:
    """The workers' metrics, served from here, when ``metrics_port`` is set."""
    if settings.metrics_port is None:
        yield None
        return
    from muxs.server.metrics import WorkersMetrics  # the optional prometheus-client is needed

    metrics = WorkersMetrics()
    try:
        port = metrics.endpoint.serve(settings.host, settings.metrics_port)
        log.info("metrics of every worker on http://%s:%d/metrics", settings.host, port)
        yield metrics
    finally:
        metrics.close()


async def supervise(settings: ServerSettings, worker: Worker) -> None:
    """Run ``settings.workers`` workers on one port until SIGTERM or SIGINT."""
    open_files = raise_open_files_limit()  # the workers inherit it
    if settings.storage is None:
        store = LocalRoot(Root(settings.root))
        try:
            remove_stale_temp_files(store)
        finally:
            await store.aclose()
    sockets = listening_sockets(settings.host, settings.port, settings.workers)
    try:
        host, port = sockets[0].getsockname()[:2]
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.info(
            "muxs listening on %s (%s, %d workers, up to %d open files each)",
            target,
            settings.storage or f"root {settings.root.resolve()}",
            settings.workers,
            open_files,
        )
        with _metrics(settings) as metrics:
            on_exit = metrics.worker_exited if metrics is not None else lambda pid: None
            await Supervisor(settings, worker, sockets, on_exit=on_exit).run()
    finally:
        for sock in sockets:
            sock.close()
