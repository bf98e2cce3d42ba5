"""The event loop choice: asyncio, uvloop, or uvloop when installed (auto)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from muxs import ConfigError, ServerSettings, event_loops
from muxs.server import loops


async def _loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("asyncio", asyncio.SelectorEventLoop), ("uvloop", uvloop.Loop), ("auto", uvloop.Loop)],
)
def test_run_uses_the_chosen_loop(choice: str, expected: type) -> None:
    assert issubclass(loops.run(_loop_type(), choice), expected)


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_loops, "uvloop_installed", lambda: False)
    assert loops.loop_factory("auto") is None


def test_choosing_uvloop_without_it_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("muxs.server.settings.uvloop_installed", lambda: False)
    with pytest.raises(ConfigError) as error:
        ServerSettings(event_loop="uvloop")
    assert error.value.option == "event_loop"
    assert "pip install 'muxs[uvloop]'" in str(error.value)


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        ServerSettings(event_loop="trio")
    assert error.value.option == "event_loop"
