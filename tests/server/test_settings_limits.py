"""The connection limits are settings: safe defaults, refused when invalid."""

import math

import pytest

from muxs import ConfigError, ServerSettings


def test_the_defaults_are_grpcs_or_safer() -> None:
    settings = ServerSettings()
    assert settings.max_message_bytes == 4 * 1024 * 1024
    assert settings.max_concurrent_streams == 100
    assert settings.max_connections == 1024
    assert settings.idle_timeout == 300.0
    assert (settings.keepalive_time, settings.keepalive_timeout) == (7200.0, 20.0)
    # grpc-go's defaults: no maximum age, an endless grace; grpcio's and grpc-go's 5 min.
    assert (settings.max_connection_age, settings.max_connection_age_grace) == (0.0, 0.0)
    assert settings.min_ping_interval == 300.0
    assert (settings.reset_budget, settings.control_frame_budget) == (10_000, 1_000)
    assert settings.budget_window == 10.0
    assert (settings.handshake_timeout, settings.request_header_timeout) == (10.0, 10.0)


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("max_concurrent_streams", 0, "0 is not between 1 and 2^31-1"),
        ("max_concurrent_streams", 2**31, f"{2**31} is not between 1 and 2^31-1"),
        ("max_connections", 0, "0 is below 1"),
        ("idle_timeout", -1.0, "-1.0 is not a number of seconds >= 0"),
        ("idle_timeout", math.inf, "inf is not a number of seconds >= 0"),
        ("keepalive_time", math.nan, "nan is not a number of seconds >= 0"),
        ("max_connection_age", -1.0, "-1.0 is not a number of seconds >= 0"),
        ("max_connection_age_grace", math.inf, "inf is not a number of seconds >= 0"),
        ("min_ping_interval", math.nan, "nan is not a number of seconds >= 0"),
        ("keepalive_timeout", 0.0, "0.0 is not a number of seconds > 0"),
        ("reset_budget", -1, "-1 is below 0"),
        ("control_frame_budget", -1, "-1 is below 0"),
        ("budget_window", 0.0, "0.0 is not a number of seconds > 0"),
        ("budget_window", math.inf, "inf is not a number of seconds > 0"),
        ("request_header_timeout", 0.0, "0.0 is not a number of seconds > 0"),
        ("request_header_timeout", math.nan, "nan is not a number of seconds > 0"),
    ],
)
def test_invalid_limits_are_refused(option: str, value: float, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(**{option: value})  # type: ignore[arg-type]
    assert (caught.value.option, caught.value.problem) == (option, problem)


def test_zero_turns_idle_timeout_and_keepalive_off() -> None:
    settings = ServerSettings(idle_timeout=0, keepalive_time=0)
    assert (settings.idle_timeout, settings.keepalive_time) == (0, 0)
