"""Settings of the attack tests. Every attack test module is marked ``both_loops``: muxs
serves on uvloop when it is installed, and uvloop hands a socket's data to the server
differently from asyncio."""

from __future__ import annotations

from pathlib import Path

import pytest

from muxs import ServerSettings

#: Smaller than the defaults, so that each attack is stopped in a fraction of a second
#: with the abuser and the server sharing this process's one core.
RESET_BUDGET = 1000
CONTROL_FRAME_BUDGET = 500


@pytest.fixture
def settings(root_dir: Path) -> ServerSettings:
    return ServerSettings(
        host="127.0.0.1",
        port=0,
        root=root_dir,
        reset_budget=RESET_BUDGET,
        control_frame_budget=CONTROL_FRAME_BUDGET,
        # Off: these prove the budgets alone stop floods. On, the ping policy cuts a PING
        # flood sooner, with too_many_pings (tests/server/test_pings.py).
        min_ping_interval=0,
    )
