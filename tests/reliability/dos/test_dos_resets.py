"""Rapid Reset (CVE-2023-44487): streams opened and reset at once, as fast as a socket goes.

The abuser is sent GOAWAY ENHANCE_YOUR_CALM once over ``reset_budget``; another client's
calls are all answered meanwhile, and nothing the reset streams held is kept.
"""

from __future__ import annotations

import pytest

from muxs import RunningServer
from tests.reliability.dos.attacks import assert_calmed_down
from tests.reliability.dos.conftest import RESET_BUDGET

pytestmark = pytest.mark.both_loops
SAY_HELLO = "/muxs.Greeter/SayHello"


async def test_rapid_reset_gets_goaway_and_others_are_served(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_calmed_down(
        live_server,
        caplog,
        lambda attacker: lambda: attacker.reset_streams(SAY_HELLO, 500),
        "reset_budget",
        RESET_BUDGET,
    )
