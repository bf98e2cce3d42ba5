"""Rapid Reset (CVE-2023-44487): streams opened and reset at once, as fast as a socket goes.

The abuser is sent GOAWAY ENHANCE_YOUR_CALM once over ``reset_budget``; another client's
calls are all answered meanwhile, and nothing the reset streams held is kept.
"""

from __future__ import annotations

import asyncio

import pytest
from h2.errors import ErrorCodes

from muxs import RunningServer
from tests.reliability.dos.attacks import Attacker
from tests.reliability.dos.conftest import RESET_BUDGET
from tests.reliability.test_misbehaving import Usage, assert_back_to, assert_others_served

SAY_HELLO = "/muxs.Greeter/SayHello"


async def test_rapid_reset_gets_goaway_and_others_are_served(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    baseline = Usage.now()
    attacker = await Attacker.open(live_server)
    flooding = asyncio.create_task(attacker.flood(lambda: attacker.reset_streams(SAY_HELLO, 500)))
    await assert_others_served(live_server)
    goaway = await attacker.wait_goaway()
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert goaway.additional_data == b"reset_budget"
    await flooding
    host, port = attacker.address
    await attacker.aclose()
    await assert_back_to(baseline, live_server)
    warnings = [r.getMessage() for r in caplog.records if "ENHANCE_YOUR_CALM" in r.getMessage()]
    over = f"over its reset_budget of {RESET_BUDGET} per 10 s"
    assert warnings == [f"GOAWAY ENHANCE_YOUR_CALM to {host}:{port}: {over}"]
