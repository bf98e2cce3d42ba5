"""The clean-install checks: the wheel, installed as users install it, works as the README says.

tox installs the built wheel (no extras, no editable install) into a fresh environment and
runs this script there, outside the repository: ``tox -e installed`` and ``tox -e
installed-typing``, both in tox's env_list, so CI (``.ci/run`` → ``tox``) runs them. Each
check works in a temporary directory and every step has a bounded wait.

``python check_install.py runtime README.md`` (nothing installed beside the wheel):

- ``muxs`` and ``muxs_api`` are imported from the environment's site-packages, and no extra
  (metrics, oauth, uvloop) is installed;
- ``muxs demo`` prints the README's transcript;
- ``muxs serve`` on an ephemeral port answers ``muxs health`` and ``muxs hello``, then stops
  with exit code 0 on SIGTERM, without a traceback;
- the README's embedding example runs as a user's script, and so does its "Your own services"
  example, beside the user's generated package (``tests/example/orders_api``, copied), and its
  "Compressing replies per call" example.

``python check_install.py typing README.md`` (the wheel and mypy): ``mypy --strict``, with no
configuration and no ``mypy_path``, sees the generated messages and the SDK's precise
return types (``muxs.Client`` and ``muxs.SyncClient``) in a user's script, and reports a
deliberate type error; and it accepts the README's "Your own services" example (a user's
service, interceptor and handler context), its "Compressing replies per call" example (and
reports an encoding muxs lacks given to ``set_compression``) and its "Testing your services"
example (a user's pytest module on ``muxs.testing``: tox installs pytest beside mypy for it).
This fails when a shipped package lacks ``py.typed``.

Stdlib only: the script itself never imports muxs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

STEP_SECONDS = 60  # the bound on each command; a healthy run takes about a second each
EXTRAS_MODULES = {"prometheus_client": "metrics", "httpx": "oauth", "uvloop": "uvloop"}
LISTENING = re.compile(r"muxs listening on (127\.0\.0\.1:\d+)")
#: The user's generated package the "Your own services" example imports.
EXAMPLE_PACKAGE = Path(__file__).resolve().parents[1] / "example" / "orders_api"
OWN_SERVICES = "Your own services"
PER_CALL_COMPRESSION = "Compressing replies per call"
TESTING = "Testing your services"


class CheckFailed(Exception):
    """One expectation did not hold; the message says which and what was seen."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def readme_block(readme: str, heading: str, language: str) -> str:
    """The first ``language`` code block of the README section ``heading``."""
    _, found, rest = readme.partition(f"\n## {heading}\n")
    match = re.search(rf"```{language}\n(.*?)```", rest.split("\n## ", 1)[0], re.DOTALL)
    if not found or match is None:
        raise CheckFailed(f"README: no {language} block under '## {heading}'")
    return match.group(1)


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``argv`` run in ``cwd``, without search paths that could point into the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=STEP_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"{' '.join(argv)} did not finish within {STEP_SECONDS} s") from exc


def succeeded(argv: list[str], cwd: Path) -> str:
    """``argv``'s stdout; it must exit 0 without a traceback."""
    done = run(argv, cwd)
    expect(
        done.returncode == 0 and "Traceback" not in done.stderr,
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}",
    )
    return done.stdout


def check_imported_from_site_packages(workdir: Path) -> None:
    purelib = Path(sysconfig.get_path("purelib")).resolve()
    shown = succeeded(
        [sys.executable, "-c", "import muxs, muxs_api; print(muxs.__file__, muxs_api.__file__)"],
        workdir,
    )
    for module_file in map(Path, shown.split()):
        expect(
            module_file.resolve().is_relative_to(purelib),
            f"{module_file} is not in site-packages ({purelib}): not the installed wheel",
        )
    print(f"ok: muxs and muxs_api are imported from {purelib}")


def check_no_extras() -> None:
    for module, extra in EXTRAS_MODULES.items():
        expect(
            importlib.util.find_spec(module) is None,
            f"{module} (the {extra} extra) is installed: this is not a plain install",
        )
    print("ok: no extra is installed")


def check_demo(muxs: str, workdir: Path, readme: str) -> None:
    transcript = readme_block(readme, "Set up", "text")
    output = succeeded([muxs, "demo"], workdir)
    expect(output == transcript, f"muxs demo printed:\n{output}README shows:\n{transcript}")
    print("ok: muxs demo prints the README's transcript")


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _next_line(lines: queue.Queue[str | None]) -> str | None:
    """The server's next log line (None: it closed stderr), within a bounded wait."""
    try:
        return lines.get(timeout=STEP_SECONDS)
    except queue.Empty as exc:
        raise CheckFailed(f"muxs serve logged nothing for {STEP_SECONDS} s") from exc


def check_serve(muxs: str, workdir: Path) -> None:
    server = subprocess.Popen(
        [muxs, "serve", "--port", "0", "--root", str(workdir / "served")],
        cwd=workdir,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_read_lines, args=(server.stderr, lines), daemon=True).start()
    log: list[str] = []
    try:
        target = None
        while target is None:
            line = _next_line(lines)
            if line is None:
                raise CheckFailed("muxs serve exited before listening:\n" + "".join(log))
            log.append(line)
            if match := LISTENING.search(line):
                target = match.group(1)
        health = succeeded([muxs, "health", "--target", target], workdir)
        expect(health == "SERVING\n", f"muxs health printed {health!r}")
        hello = succeeded([muxs, "hello", "you", "--target", target], workdir)
        expect(hello == "Hello, you!\n", f"muxs hello printed {hello!r}")
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=STEP_SECONDS)
        except subprocess.TimeoutExpired as exc:
            raise CheckFailed(f"muxs serve still ran {STEP_SECONDS} s after SIGTERM") from exc
        while (line := _next_line(lines)) is not None:
            log.append(line)
        expect(code == 0, f"muxs serve exited {code} on SIGTERM")
        expect("Traceback" not in "".join(log), "muxs serve logged a traceback:\n" + "".join(log))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    print(f"ok: muxs serve ({target}) answers muxs health and muxs hello, stops on SIGTERM")


def check_embedding(workdir: Path, readme: str) -> None:
    script = workdir / "embedding.py"
    script.write_text(readme_block(readme, "Embedding the server", "python"))
    output = succeeded([sys.executable, str(script)], workdir)
    expect(
        re.fullmatch(r"listening on 127\.0\.0\.1:\d+\nHello, embedded!\n", output) is not None,
        f"the README's embedding example printed:\n{output}",
    )
    print("ok: the README's embedding example runs")


def example_script(workdir: Path, readme: str, heading: str = OWN_SERVICES) -> Path:
    """The README's example under ``heading`` as ``user.py``, the user's package beside it."""
    shutil.copytree(EXAMPLE_PACKAGE, workdir / EXAMPLE_PACKAGE.name)
    script = workdir / "user.py"
    script.write_text(readme_block(readme, heading, "python"))
    return script


def check_own_services(workdir: Path, readme: str) -> None:
    output = succeeded([sys.executable, str(example_script(workdir, readme))], workdir)
    expect(
        output == "placed order 1 of tea\nUNAUTHENTICATED\nHello, alice!\n",
        f"the README's own-services example printed:\n{output}",
    )
    print("ok: the README's own-services example runs")


def check_per_call_compression(workdir: Path, readme: str) -> None:
    script = workdir / "compressing.py"
    script.write_text(readme_block(readme, PER_CALL_COMPRESSION, "python"))
    output = succeeded([sys.executable, str(script)], workdir)
    expect(
        output == "Read replies with gzip\n5000\n",
        f"the README's per-call compression example printed:\n{output}",
    )
    print("ok: the README's per-call compression example runs")


#: What a user's mypy configuration needs for code betterproto2 0.10 generates (the README says
#: so): its MessagePool lacks ``-> None``, an untyped call in the generated message_pool.py.
GENERATED_CODE_MYPY = "[mypy-orders_api.message_pool]\ndisable_error_code = no-untyped-call\n"


def check_own_services_types(workdir: Path, readme: str) -> None:
    source = example_script(workdir, readme).read_text()
    code, output = mypy_strict(workdir, source, GENERATED_CODE_MYPY)
    shown = "\n".join(output)
    expect(code == 0, f"mypy --strict refused the README's own-services example:\n{shown}")
    print("ok: mypy --strict accepts the README's own-services example")


#: The README's per-call compression example's line, and the mistake mypy must report in it.
COMPRESSION_MISTAKE = (
    'call.set_compression("gzip")',
    'call.set_compression("br")',
    'Argument 1 to "set_compression" of "CallContext" has incompatible type "Literal[\'br\']"; '
    "expected \"Literal['gzip', 'deflate', 'identity']\"",
)


def check_compression_types(workdir: Path, readme: str) -> None:
    source = readme_block(readme, PER_CALL_COMPRESSION, "python")
    code, output = mypy_strict(workdir, source)
    shown = "\n".join(output)
    expect(code == 0, f"mypy --strict refused the README's per-call compression example:\n{shown}")
    line, mistake, message = COMPRESSION_MISTAKE
    expect(line in source, f"the README's per-call compression example lost {line!r}")
    code, output = mypy_strict(workdir, source.replace(line, mistake))
    errors = [line for line in output if ": error: " in line]
    expect(
        code == 1 and len(errors) == 1 and message in errors[0],
        "mypy --strict did not report set_compression's unknown encoding:\n" + "\n".join(output),
    )
    print("ok: mypy --strict accepts the README's per-call compression example, not 'br'")


def check_testing_types(workdir: Path, readme: str) -> None:
    source = example_script(workdir, readme, TESTING).read_text()
    code, output = mypy_strict(workdir, source, GENERATED_CODE_MYPY)
    shown = "\n".join(output)
    expect(code == 0, f"mypy --strict refused the README's muxs.testing example:\n{shown}")
    print("ok: mypy --strict accepts the README's muxs.testing example (a user's test module)")


# A user's script: every SDK call's result is the generated dataclass (or a precise builtin);
# as `Any` the assert_type lines and the returns (no-any-return) would be errors.
USER_SCRIPT = """\
import asyncio
from typing import assert_type

import muxs

reveal_type(muxs.HelloReply)


async def with_async_client() -> str:
    async with muxs.Client("127.0.0.1:50051", timeout=5) as client:
        reply = await client.say_hello("you")
        reveal_type(reply)
        assert_type(await client.square(231), muxs.Number)
        assert_type(await client.lots_of_greetings(["a", "b"]), muxs.HelloReply)
        assert_type(await client.write("a.txt", "hi"), muxs.Status)
        assert_type(await client.read("a.txt"), muxs.Content)
        assert_type(await client.write_bytes("b.bin", b"hi"), muxs.Status)
        assert_type(await client.read_bytes("b.bin"), bytes)
        assert_type(await client.stat("a.txt"), muxs.FileInfo)
        assert_type(await client.delete("a.txt"), muxs.Status)
        assert_type(await client.check_health(), str)
        async for info in client.list():
            assert_type(info, muxs.FileInfo)
        async with client.lots_of_replies("you", count=2) as replies:
            async for greeting in replies:
                assert_type(greeting, muxs.HelloReply)
        return reply.message


def with_sync_client() -> str:
    with muxs.SyncClient("127.0.0.1:50051", timeout=5) as client:
        reply = client.say_hello("you")
        reveal_type(reply)
        assert_type(client.square(231), muxs.Number)
        assert_type(client.lots_of_greetings(["a", "b"]), muxs.HelloReply)
        assert_type(client.write("a.txt", "hi"), muxs.Status)
        assert_type(client.read("a.txt"), muxs.Content)
        assert_type(client.write_bytes("b.bin", b"hi"), muxs.Status)
        assert_type(client.read_bytes("b.bin"), bytes)
        assert_type(client.stat("a.txt"), muxs.FileInfo)
        assert_type(client.delete("a.txt"), muxs.Status)
        for info in client.list():
            assert_type(info, muxs.FileInfo)
        for greeting in client.lots_of_replies("you", count=2):
            assert_type(greeting, muxs.HelloReply)
        return client.square(2).value.hex()


async def add_request_id(call: muxs.ClientCall, proceed: muxs.Proceed) -> None:
    call.metadata.append(("x-request-id", "1"))
    await proceed(call)


def with_metadata() -> None:
    info = muxs.CallInfo()
    interceptors: list[muxs.Interceptor] = [add_request_id]
    with muxs.SyncClient("127.0.0.1:50051", metadata={"x-a": "b"}, interceptors=interceptors) as c:
        reply = c.say_hello("you", metadata={"x-blob-bin": b"1"}, call_info=info)
        assert_type(reply, muxs.HelloReply)
    assert_type(info.trailers.get("x-a"), str | bytes | None)
    assert_type(info.status, muxs.StatusCode | None)


try:
    print(asyncio.run(with_async_client()), with_sync_client())
except muxs.RpcError as exc:
    assert_type(exc.status, muxs.StatusCode)
    assert_type(exc.trailers, muxs.Metadata)
"""
REVEALED = [
    r'user\.py:\d+: note: Revealed type is "def \(.*\) -> muxs_api\.muxs\.HelloReply"',
    r'user\.py:\d+: note: Revealed type is "muxs_api\.muxs\.HelloReply"',
    r'user\.py:\d+: note: Revealed type is "muxs_api\.muxs\.HelloReply"',
]
# The same script with a deliberate mistake per client: both must be reported.
MISTAKES = {
    "        return reply.message\n": (
        "        value: str = (await client.square(2)).value\n        return value\n",
        'Incompatible types in assignment (expression has type "float", variable has type "str")',
    ),
    "        return client.square(2).value.hex()\n": (
        "        size: str = client.stat('a.txt').size\n        return size\n",
        'Incompatible types in assignment (expression has type "int", variable has type "str")',
    ),
}


def mypy_strict(workdir: Path, source: str, config: str = "") -> tuple[int, list[str]]:
    """Run ``mypy --strict`` on ``source`` as ``user.py`` in ``workdir``, with no config
    but ``config`` (a ``mypy.ini``'s text) when given."""
    (workdir / "user.py").write_text(source)
    config_file = ""
    if config:
        (workdir / "mypy.ini").write_text(config)
        config_file = "mypy.ini"
    argv = [sys.executable, "-m", "mypy", "--strict", f"--config-file={config_file}"]
    argv.append("--no-incremental")
    done = run([*argv, "--cache-dir", str(workdir / ".mypy_cache"), "user.py"], workdir)
    return done.returncode, (done.stdout + done.stderr).splitlines()


def check_user_script_types(workdir: Path) -> None:
    code, output = mypy_strict(workdir, USER_SCRIPT)
    shown = "\n".join(output)
    expect(code == 0, f"mypy --strict refused the user's script:\n{shown}")
    notes = [line for line in output if "Revealed type" in line]
    expect(
        len(notes) == len(REVEALED)
        and all(re.fullmatch(want, note) for want, note in zip(REVEALED, notes, strict=True)),
        f"mypy revealed other types than the generated dataclasses:\n{shown}",
    )
    print("ok: mypy --strict sees the generated dataclasses through Client and SyncClient")


def check_mistakes_reported(workdir: Path) -> None:
    source = USER_SCRIPT
    for line, (mistake, _) in MISTAKES.items():
        expect(line in source, f"the user's script lost the line {line.strip()!r}")
        source = source.replace(line, mistake)
    code, output = mypy_strict(workdir, source)
    errors = [line for line in output if ": error: " in line]
    expect(
        code == 1
        and len(errors) == len(MISTAKES)
        and all(any(message in error for error in errors) for _, message in MISTAKES.values()),
        "mypy --strict did not report exactly the deliberate mistakes:\n" + "\n".join(output),
    )
    print("ok: mypy --strict reports a deliberate type error with either client")


def runtime_checks(readme_path: Path) -> list[Callable[[Path], None]]:
    readme = readme_path.read_text()
    muxs = str(Path(sysconfig.get_path("scripts")) / "muxs")
    repository = readme_path.resolve().parent

    def outside_the_repository(workdir: Path) -> None:
        expect(
            not workdir.resolve().is_relative_to(repository),
            f"the work directory {workdir} is inside the repository",
        )

    return [
        outside_the_repository,
        check_imported_from_site_packages,
        lambda _: check_no_extras(),
        lambda workdir: check_demo(muxs, workdir, readme),
        lambda workdir: check_serve(muxs, workdir),
        lambda workdir: check_embedding(workdir, readme),
        lambda workdir: check_own_services(workdir, readme),
        lambda workdir: check_per_call_compression(workdir, readme),
    ]


def typing_checks(readme_path: Path) -> list[Callable[[Path], None]]:
    readme = readme_path.read_text()
    return [
        check_imported_from_site_packages,
        check_user_script_types,
        check_mistakes_reported,
        lambda workdir: check_own_services_types(workdir, readme),
        lambda workdir: check_compression_types(workdir, readme),
        lambda workdir: check_testing_types(workdir, readme),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    modes.add_parser("runtime", help="the CLI and the embedding API").add_argument(
        "readme", type=Path, help="the README whose transcript and example are checked"
    )
    modes.add_parser("typing", help="mypy --strict on a user's script").add_argument(
        "readme",
        type=Path,
        help="the README whose own-services and testing examples are type-checked",
    )
    args = parser.parse_args(argv)
    checks = (runtime_checks if args.mode == "runtime" else typing_checks)(args.readme)
    failed = 0
    for check in checks:
        with tempfile.TemporaryDirectory(prefix="muxs-installed-") as tmp:
            try:
                check(Path(tmp))
            except CheckFailed as failure:
                print(f"FAILED: {failure}", flush=True)
                failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
