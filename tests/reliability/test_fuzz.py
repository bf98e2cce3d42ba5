"""The fuzz target's path in every test run: its crashes replayed, and random inputs at scale.

``tox -e fuzz`` runs the coverage-guided fuzzer (atheris) for a bounded time; each crash
it ever found is a file in fuzz_crashes/ (the first byte picks the method, the rest is the
request stream), named for what it did before it was fixed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
from hypothesis import strategies as st

from tests.rawh2 import grpc_frame
from tests.reliability.fuzz_target import Target, seeds

CRASHES = sorted((Path(__file__).parent / "fuzz_crashes").iterdir())


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    target = Target()
    yield target
    target.close()


@pytest.mark.parametrize("crash", CRASHES, ids=lambda path: path.name)
def test_every_crash_the_fuzzer_found_stays_fixed(target: Target, crash: Path) -> None:
    target.check(crash.read_bytes())


def test_the_seeds_are_served(target: Target) -> None:
    for seed in seeds(target):
        target.check(seed)


@hypothesis.settings(max_examples=3000, deadline=None)
@hypothesis.given(method=st.integers(0, 255), body=st.binary(max_size=400))
def test_random_request_streams(target: Target, method: int, body: bytes) -> None:
    target.check(bytes([method]) + body)


@hypothesis.settings(max_examples=1000, deadline=None)
@hypothesis.given(method=st.integers(0, 255), messages=st.lists(st.binary(max_size=60), max_size=4))
def test_random_messages_in_valid_frames(
    target: Target, method: int, messages: list[bytes]
) -> None:
    target.check(bytes([method]) + b"".join(grpc_frame(message) for message in messages))
