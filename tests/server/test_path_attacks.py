"""Every FileController call against the path-attack corpus, through the SDK.

The same corpus runs through grpcio in ``tests/interop/test_grpcio_files.py``.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from muxs import Client, RpcError
from tests.path_attacks import CORPUS, Attack, plant, snapshot

T = TypeVar("T")


async def call(client: Client, method: str, name: str) -> None:
    if method == "Read":
        await client.read(name)
    elif method == "ReadStream":
        await client.read_bytes(name)
    elif method == "Stat":
        await client.stat(name)
    elif method == "Delete":
        await client.delete(name)
    elif method == "List":
        [info async for info in client.list(name)]
    elif method == "Write":
        await client.write(name, "pwned")
    else:
        assert method == "WriteStream"
        await client.write_bytes(name, b"pwned")


async def answer(client: Client, method: str, name: str) -> tuple[str, str]:
    """The status name a call answers with ("OK" for success) and its message."""
    try:
        await call(client, method, name)
    except RpcError as exc:
        return exc.status.name, exc.message
    return "OK", ""


@pytest.mark.parametrize("attack", CORPUS, ids=[attack.id for attack in CORPUS])
async def test_the_corpus(client: Client, root_dir: Path, attack: Attack) -> None:
    outside = plant(root_dir)
    outside_before, root_before = snapshot(outside), snapshot(root_dir)
    expected = attack.expectations()
    replies = {method: await answer(client, method, attack.name) for method in expected}
    answers = {method: status for method, (status, _) in replies.items()}
    assert answers == expected
    for _, message in replies.values():
        assert str(root_dir.parent) not in message
        assert "Traceback" not in message
    assert snapshot(outside) == outside_before
    if "OK" in answers.values():  # a harmless name: written inside the root, nowhere else
        assert (root_dir / attack.name).read_bytes() == b"pwned"
    else:
        assert snapshot(root_dir) == root_before


async def names(client: Client, path: str) -> set[str]:
    return {info.name async for info in client.list(path)}


async def test_nfc_and_nfd_spellings_are_different_files(client: Client, root_dir: Path) -> None:
    nfc, nfd = "caf\u00e9.txt", "cafe\u0301.txt"
    assert unicodedata.normalize("NFC", nfd) == nfc
    await client.write(nfc, "composed")
    await client.write(nfd, "decomposed")
    assert (await client.read(nfc)).text == "composed"
    assert (await client.read(nfd)).text == "decomposed"
    assert await names(client, "") == {nfc, nfd}


@pytest.mark.parametrize("write", ["Write", "WriteStream"])
async def test_a_hard_link_to_a_file_outside_is_served_and_what_is_outside_never_changes(
    client: Client, root_dir: Path, write: str
) -> None:
    """A hard link is the root's name for a file, wherever else the file is named: it is
    served as any file is (as nginx, Apache and Samba serve one). A client cannot make one,
    and what it does through one never reaches the other name: a write replaces the root's
    name (a rename), a delete removes only that name."""
    outside = plant(root_dir)
    (root_dir / "linked").hardlink_to(outside / "secret")
    assert (await client.read("linked")).text == "secret"
    assert (await client.stat("linked")).size == len("secret")
    await call(client, write, "linked")
    assert (await client.read("linked")).text == "pwned"
    assert (outside / "secret").read_text() == "secret"
    assert (outside / "secret").stat().st_nlink == 1
    (root_dir / "linked-again").hardlink_to(outside / "secret")
    await client.delete("linked-again")
    assert not (root_dir / "linked-again").exists()
    assert (outside / "secret").read_text() == "secret"


async def attempt(call: Awaitable[T]) -> T | str:
    try:
        return await call
    except RpcError as exc:
        return exc.status.name


async def test_a_symlink_swapped_during_calls_never_leads_any_call_out(
    client: Client, root_dir: Path
) -> None:
    """``d`` flips between a directory inside the root and one outside, as fast as it can."""
    outside = root_dir.parent / "outside"
    outside.mkdir()
    (outside / "f.txt").write_text("secret, longer")
    (outside / "only_outside").write_text("x")
    (root_dir / "inside").mkdir()
    outside_before = snapshot(outside)
    stop = threading.Event()

    def swap() -> None:
        link, tmp = root_dir / "d", root_dir / "d.new"
        while not stop.is_set():
            for target in ("inside", str(outside)):
                tmp.symlink_to(target)
                tmp.replace(link)

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen: set[object] = set()
    try:
        for _ in range(60):
            (root_dir / "inside" / "f.txt").write_text("public")
            seen.add(await attempt(client.read_bytes("d/f.txt")))
            text = await attempt(client.read("d/f.txt"))
            seen.add(text if isinstance(text, str) else text.text)
            stat = await attempt(client.stat("d/f.txt"))
            seen.add(stat if isinstance(stat, str) else stat.size)
            listed = await attempt(names(client, "d"))
            seen.update(listed if isinstance(listed, set) else {listed})
            for change in (client.write_bytes("d/new", b"pwned"), client.delete("d/f.txt")):
                outcome = await attempt(change)
                seen.add(outcome if isinstance(outcome, str) else "OK")
    finally:
        stop.set()
        swapper.join()
    assert snapshot(outside) == outside_before
    statuses = {"PERMISSION_DENIED", "NOT_FOUND", "ABORTED"}
    leaks = {b"secret, longer", "secret, longer", len("secret, longer"), "only_outside"}
    assert not seen & leaks
    assert {value for value in seen if isinstance(value, str)} <= statuses | {
        "OK",
        "f.txt",
        "new",
        "public",
    }
