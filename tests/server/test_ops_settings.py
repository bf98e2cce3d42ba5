"""The operations options: reflection, shutdown grace, log format, metrics port."""

import sys

import pytest

from muxs import ConfigError, ServerSettings
from muxs.server.config import load_settings
from tests.server.test_config import flags


def test_defaults() -> None:
    settings = ServerSettings()
    assert settings.reflection is True
    assert settings.shutdown_grace == 10.0
    assert settings.log_format == "text"
    assert settings.metrics_port is None


def test_flags_and_environment_set_them() -> None:
    environ = {"MUXS_SHUTDOWN_GRACE": "2.5", "MUXS_LOG_FORMAT": "json"}
    loaded = load_settings(flags("--no-reflection", "--metrics-port", "0"), environ)
    assert loaded.settings.reflection is False
    assert loaded.settings.shutdown_grace == 2.5
    assert loaded.settings.log_format == "json"
    assert loaded.settings.metrics_port == 0
    assert loaded.sources["reflection"] == "flag --reflection"
    assert loaded.sources["metrics_port"] == "flag --metrics-port"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"MUXS_SHUTDOWN_GRACE": "-1"},
            "shutdown_grace: -1.0 is not a number >= 0 (from env MUXS_SHUTDOWN_GRACE)",
        ),
        ({"MUXS_SHUTDOWN_GRACE": "nan"}, "shutdown_grace: nan is not a number >= 0"),
        ({"MUXS_LOG_FORMAT": "xml"}, "log_format: 'xml' is not one of text, json"),
        (
            {"MUXS_METRICS_PORT": "70000"},
            "metrics_port: 70000 is not between 0 and 65535 (from env MUXS_METRICS_PORT)",
        ),
        ({"MUXS_REFLECTION": "maybe"}, "reflection: 'maybe' is not true or false"),
    ],
)
def test_invalid_values_name_the_option_and_source(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ)
    assert message in str(caught.value)


def test_metrics_without_prometheus_client_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigError) as caught:
        load_settings(flags("--metrics-port", "9100"), {})
    assert str(caught.value) == (
        "metrics_port: needs the prometheus-client package: pip install 'muxs[metrics]' "
        "(from flag --metrics-port)"
    )
