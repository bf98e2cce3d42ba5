"""Fixtures of the reliability tests: a server with small limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from muxs import ServerSettings
from tests.reliability.methods import LIMIT, MAX_REPLIES


@pytest.fixture
def settings(root_dir: Path) -> ServerSettings:
    return ServerSettings(
        host="127.0.0.1",
        port=0,
        root=root_dir,
        max_message_bytes=LIMIT,
        max_stream_replies=MAX_REPLIES,
    )
