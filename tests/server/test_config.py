"""One settings model: flags over environment over TOML file over defaults, each value traced."""

import tomllib
from pathlib import Path

import pytest

from muxs import ConfigError, ServerSettings
from muxs.cli import build_parser, main
from muxs.server.config import load_settings


def flags(*argv: str) -> dict[str, object]:
    args = vars(build_parser().parse_args(["serve", *argv]))
    return {k: v for k, v in args.items() if k not in ("command", "handler", "config")}


def test_defaults_come_from_the_settings_class() -> None:
    loaded = load_settings({}, {})
    assert loaded.settings == ServerSettings()
    assert set(loaded.sources.values()) == {"default"}


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "muxs.toml"
    config.write_text('port = 1111\nhost = "0.0.0.0"\nroot = "files"\nlog_level = "DEBUG"\n')
    environ = {"MUXS_PORT": "2222", "MUXS_HOST": "::1"}
    loaded = load_settings(flags("--port", "3333"), environ, config)
    assert loaded.settings.port == 3333
    assert loaded.settings.host == "::1"
    assert loaded.settings.root == Path("files")
    assert loaded.settings.log_level == "DEBUG"
    assert loaded.sources["port"] == "flag --port"
    assert loaded.sources["host"] == "env MUXS_HOST"
    assert loaded.sources["root"] == f"file {config}"
    assert loaded.sources["max_message_bytes"] == "default"


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "muxs.toml"
    config.write_text("max_message_bytes = 2048\n")
    loaded = load_settings({}, {"MUXS_CONFIG": str(config)})
    assert loaded.settings.max_message_bytes == 2048


@pytest.mark.parametrize(
    ("environ", "toml", "message"),
    [
        ({"MUXS_PORT": "abc"}, "", "port: 'abc' is not an integer (from env MUXS_PORT)"),
        ({"MUXS_PORT": "99999"}, "", "port: 99999 is not between 0 and 65535 (from env MUXS_PORT)"),
        ({}, 'port = "80"', "port: '80' is not an integer (from file"),
        ({}, "colour = 1", "colour: is not a muxs option (from file"),
        ({}, "port = [", "config: "),
        ({"MUXS_LOG_LEVEL": "LOUD"}, "", "log_level: 'LOUD' is not one of DEBUG, INFO"),
    ],
)
def test_an_invalid_value_names_the_option_and_its_source(
    tmp_path: Path, environ: dict[str, str], toml: str, message: str
) -> None:
    config = tmp_path / "muxs.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, environ, config)
    assert message in str(caught.value)


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config: cannot read .*nope\.toml: No such file"):
        load_settings({}, {}, tmp_path / "nope.toml")


def test_serve_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for name in ServerSettings.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in out
        assert "MUXS_" + name.upper() in out


def test_config_show_prints_values_and_sources(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUXS_HOST", "::1")
    assert main(["config", "show", "--port", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert 'host = "::1"  # env MUXS_HOST' in out
    assert "port = 0  # flag --port" in out
    assert "max_message_bytes = 4194304  # default" in out


def test_config_show_with_an_invalid_value_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUXS_PORT", "-1")
    assert main(["config", "show"]) == 2
    assert capsys.readouterr().err == (
        "muxs config: invalid setting: port: -1 is not between 0 and 65535 (from env MUXS_PORT)\n"
    )


def test_config_show_prints_toml_that_config_reads_back_to_the_same_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {
        "MUXS_HOST": "::1",
        "MUXS_MAX_CALL_SECONDS": "2.5",
        "MUXS_ROOT": str(tmp_path / 'a "quoted" \\ dir\tand é'),
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    argv = ["--port", "0", "--no-access-log", "--shutdown-grace", "3", "--log-format", "json"]
    argv += ["--metrics-port", "9100", "--auth-tokens", "tokens.toml"]
    expected = load_settings(flags(*argv), environ).settings
    assert main(["config", "show", *argv]) == 0
    shown = capsys.readouterr().out

    # Valid TOML: each option with a value is a key; unset ones are comments.
    parsed = tomllib.loads(shown)
    assert parsed["max_call_seconds"] == 2.5
    assert parsed["access_log"] is False
    assert "tls_cert" not in parsed
    assert "# tls_cert = (unset)  # default" in shown.splitlines()
    # Read back by --config, with no flag or variable left, it gives the same settings.
    config = tmp_path / "shown.toml"
    config.write_text(shown, encoding="utf-8")
    args = build_parser().parse_args(["serve", "--config", str(config)])
    for name in environ:
        monkeypatch.delenv(name)
    assert load_settings({}, {}, args.config).settings == expected


KEY = "\n".join(
    [
        "-----BEGIN EC PRIVATE KEY-----",
        "MHcCAQEEINXvVHLBrl2ZAKjUYkOU3LBFU1ay",
        "-----END EC PRIVATE KEY-----",
    ]
)


@pytest.mark.parametrize("name", ["tls_key", "tls_cert", "tls_client_ca", "auth_tokens"])
def test_a_files_contents_where_its_path_belongs_is_refused_and_never_shown(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for option in ("tls_cert", "tls_key"):  # TLS options come in pairs: the pair is complete
        monkeypatch.setenv(f"MUXS_{option.upper()}", str(tmp_path / f"{option}.pem"))
    monkeypatch.setenv(f"MUXS_{name.upper()}", KEY)
    assert main(["config", "show"]) == 2
    shown = capsys.readouterr()
    assert shown.out == ""
    assert shown.err == (
        f"muxs config: invalid setting: {name}: must be the path of a file, not the file's "
        f"contents (the value is not shown: it may be a secret) (from env MUXS_{name.upper()})\n"
    )
    assert main(["serve", "--port", "0", "--root", str(tmp_path)]) == 2
    assert "PRIVATE KEY" not in capsys.readouterr().err
