"""nginx from deploy/nginx/ in front of three muxs backends: TLS, spread, and a backend dying.

nginx terminates TLS (certificates made by trustme) and ``grpc_pass``-es to the backends;
the SDK calls through it. Each backend's root holds a file ``who`` naming the backend, so
``read("who")`` tells which backend served a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import socket
import string
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from muxs import Client, RpcError, StatusCode
from tests.processes import die_with_parent, muxs_process

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "muxs.conf.template"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BACKENDS = 3

# The main nginx.conf around the deployed file: everything inside the test's directory.
MAIN_CONF = """\
daemon off;
{user}
worker_processes 2;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 512; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/muxs.conf;
}}
"""

pytestmark = pytest.mark.slow


def render(template: str, values: dict[str, str]) -> str:
    """What ``envsubst`` does with the template's ``${MUXS_*}`` placeholders."""
    text = string.Template(template).safe_substitute(values)
    assert "${MUXS_" not in text, "a placeholder was left unfilled"
    return text


def tls_client(target: str, ca: trustme.CA, tmp_path: Path) -> Client:
    """An SDK client over TLS trusting ``ca`` (nginx's certificate)."""
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Client(target, timeout=30, tls=ca_file)


@dataclass
class Backend:
    name: str
    target: str
    process: asyncio.subprocess.Process
    #: Its log lines after the one saying where it listens, as they come.
    log: list[str]


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    """Each backend's root, holding ``who``: the backend's name."""
    roots = {f"backend-{i}": tmp_path / f"root-{i}" for i in range(BACKENDS)}
    for name, root in roots.items():
        root.mkdir()
        (root / "who").write_text(name)
    return roots


@pytest.fixture
async def backends(
    roots: dict[str, Path], request: pytest.FixtureRequest
) -> AsyncIterator[list[Backend]]:
    """The backends, with the options of an ``indirect`` parametrization, if any."""
    options: tuple[str, ...] = getattr(request, "param", ())
    async with contextlib.AsyncExitStack() as stack:
        running = []
        for name, root in roots.items():
            log: list[str] = []
            context = muxs_process(root, *options, later=log)
            process, target = await stack.enter_async_context(context)
            running.append(Backend(name, target, process, log))
        yield running


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def nginx(tmp_path: Path, ca: trustme.CA, backends: list[Backend]) -> Iterator[str]:
    """nginx on an ephemeral port of 127.0.0.1 with deploy/nginx's config; yields its target.

    The test binds the listening socket and hands it to nginx (nginx inherits sockets named
    in the NGINX environment variable): connections wait in its backlog until nginx is up.
    """
    directory = tmp_path / "nginx"
    directory.mkdir()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        directory / "server.pem"
    )
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    (directory / "muxs.conf").write_text(
        render(
            TEMPLATE.read_text(),
            {
                "MUXS_LISTEN": f"127.0.0.1:{port}",
                "MUXS_TLS_CERT": str(directory / "server.pem"),
                "MUXS_TLS_KEY": str(directory / "server.pem"),
                "MUXS_BACKENDS": " ".join(f"server {b.target};" for b in backends),
            },
        )
    )
    user = "user root;" if os.geteuid() == 0 else ""  # workers write under the test's tmp dir
    (directory / "nginx.conf").write_text(MAIN_CONF.format(dir=directory, user=user))
    command = [NGINX, "-p", str(directory), "-e", str(directory / "error.log")]
    command += ["-c", str(directory / "nginx.conf")]
    env = {**os.environ, "NGINX": f"{listener.fileno()};"}
    process = subprocess.Popen(
        command, pass_fds=[listener.fileno()], env=env, preexec_fn=die_with_parent
    )
    listener.close()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)
        log = (directory / "error.log").read_text()
        assert "[emerg]" not in log, log


async def test_calls_through_nginx_are_correct_and_spread_over_every_backend(
    nginx: str, backends: list[Backend], ca: trustme.CA, tmp_path: Path
) -> None:
    async with tls_client(nginx, ca, tmp_path) as client:
        assert (await client.say_hello("tls")).message == "Hello, tls!"
        async with client.lots_of_replies("stream", 500) as replies:
            assert [reply.index async for reply in replies] == list(range(1, 501))
        assert (await client.lots_of_greetings(["a", "b", "c"])).message == "Hello, a, b and c!"
        async with client.bidi_hello(["x", "y"]) as bidi:
            assert [reply.message async for reply in bidi] == ["Hello, x!", "Hello, y!"]
        served = Counter([(await client.read("who")).text for _ in range(30)])
    assert set(served) == {backend.name for backend in backends}
    assert min(served.values()) >= 5, served


@dataclass(frozen=True)
class Call:
    """One call, its start and end placed on the test's logical clock (``step``)."""

    began: int
    ended: int
    served_by: str | None
    error: StatusCode | None


async def test_a_backend_killed_mid_run_fails_only_calls_in_flight_on_it(
    nginx: str, backends: list[Backend], ca: trustme.CA, tmp_path: Path
) -> None:
    concurrency, total = 4, 240
    victim = backends[1]
    calls: list[Call] = []
    a_third_done = asyncio.Event()
    # Orders the events of the test's one event loop: before and after, never how long.
    step = itertools.count().__next__

    async def caller(client: Client, numbers: Iterator[int]) -> None:
        for _ in numbers:
            began = step()
            try:
                served_by, error = (await client.read("who")).text, None
            except RpcError as exc:
                served_by, error = None, exc.status
            calls.append(Call(began, step(), served_by, error))
            if len(calls) >= total // 3:
                a_third_done.set()

    async def killer() -> tuple[int, int]:
        await a_third_done.wait()
        killed = step()
        victim.process.kill()
        await victim.process.wait()  # its sockets are closed once it is reaped
        return killed, step()

    async with tls_client(nginx, ca, tmp_path) as client:
        numbers = iter(range(total))
        kill = asyncio.create_task(killer())
        await asyncio.gather(*(caller(client, numbers) for _ in range(concurrency)))
        killed, reaped = await kill

    failed = [call for call in calls if call.error is not None]
    assert len(calls) == total
    assert len(failed) <= concurrency
    for call in failed:  # each was in flight while the victim died
        assert call.error is StatusCode.UNAVAILABLE
        assert call.began < reaped
        assert call.ended > killed
    before = Counter(call.served_by for call in calls if call.ended < killed)
    after = Counter(call.served_by for call in calls if call.began > reaped)
    assert before[victim.name] > 0
    assert set(after) == {backend.name for backend in backends if backend is not victim}
    assert sum(after.values()) >= total // 3


def goaways_for_age(backends: list[Backend]) -> int:
    return sum("reached its max_connection_age" in line for b in backends for line in b.log)


@pytest.mark.parametrize(
    "backends",
    [("--max-connection-age", "0.2", "--max-connection-age-grace", "10")],
    indirect=True,
)
async def test_backend_connections_past_their_age_are_replaced_and_no_call_fails(
    nginx: str, backends: list[Backend], ca: trustme.CA, tmp_path: Path
) -> None:
    concurrency = 4
    served: Counter[str] = Counter()

    async def caller(client: Client) -> None:
        # Calls until every backend has sent several connections away (bounded in calls).
        for _ in range(5_000):
            if goaways_for_age(backends) >= 3 * BACKENDS:
                return
            served[(await client.read("who")).text] += 1  # any failure fails the test
        raise AssertionError(f"too few max-age GOAWAYs: {goaways_for_age(backends)}")

    async with tls_client(nginx, ca, tmp_path) as client:
        await asyncio.gather(*(caller(client) for _ in range(concurrency)))
    assert set(served) == {backend.name for backend in backends}
