"""Helpers for tests that start processes."""

from __future__ import annotations

import ctypes
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the test process dies (Linux), so that a
    test killed mid-way (a CI timeout) leaves no server behind (SIGTERM, not SIGKILL: nginx
    and ``muxs serve --workers`` then stop their own worker processes too)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
