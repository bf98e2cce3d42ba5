"""Build ``ServerSettings`` from flags, environment variables and a TOML file.

Precedence: a flag (``--max-message-bytes``) over an environment variable
(``MUXS_MAX_MESSAGE_BYTES``) over a key of the TOML file given by ``--config`` or
``MUXS_CONFIG`` (``max_message_bytes = 1048576``) over the default. Every value
remembers where it came from, for error messages and ``muxs config show``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

from muxs.errors import ConfigError
from muxs.server.settings import ServerSettings

ENV_PREFIX = "MUXS_"
CONFIG_ENV = "MUXS_CONFIG"
#: OpenTelemetry's standard variable naming the span exporters: set (not ``none``), it turns
#: tracing on (``otel``).
OTEL_EXPORTER_ENV = "OTEL_TRACES_EXPORTER"
DEFAULT_SOURCE = "default"
#: The standard AWS variables an S3 option falls back to when neither a flag, its ``MUXS_``
#: variable nor the file gives it.
AWS_ENV = {
    "s3_endpoint": "AWS_ENDPOINT_URL",
    "s3_region": "AWS_REGION",
    "s3_access_key_id": "AWS_ACCESS_KEY_ID",
    "s3_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}

_FIELDS = {field.name: field for field in dataclasses.fields(ServerSettings)}
_TYPES: dict[str, Any] = typing.get_type_hints(ServerSettings)
_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class LoadedSettings:
    """Settings and, for each field, where its value came from."""

    settings: ServerSettings
    sources: Mapping[str, str]

    def describe(self) -> list[str]:
        """The settings as TOML that ``--config`` reads back to the same settings: a line
        ``name = value  # source`` for every option; options without a value commented
        out: ``# tls_cert = (unset)  # default``. A secret (``s3_secret_access_key``) is
        commented out as ``(redacted)``: never shown, so not read back either."""
        lines = []
        for name, field in _FIELDS.items():
            value = getattr(self.settings, name)
            source = self.sources[name]
            if value is not None and field.metadata["secret"]:
                lines.append(f"# {name} = (redacted)  # {source}")
            elif value is None:
                lines.append(f"# {name} = (unset)  # {source}")
            else:
                lines.append(f"{name} = {_toml_value(value)}  # {source}")
        return lines


def _toml_value(value: object) -> str:
    """``value`` (a bool, number, string or path) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (quotes, backslashes and control characters escaped)."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char < " " or char == "\x7f":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _base_type(name: str) -> tuple[type, bool]:
    """The field's type without ``| None``, and whether None is allowed."""
    hint = _TYPES[name]
    if isinstance(hint, UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not NoneType]
        return args[0], True
    return hint, False


def _parse_text(name: str, text: str) -> object:
    """Parse a flag's or environment variable's text as the field's type."""
    kind, optional = _base_type(name)
    if optional and text.lower() in ("", "none"):
        return None
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not true or false")
    if kind is int:
        if not text.strip().lstrip("+-").isdigit():
            raise ValueError(f"{text!r} is not an integer")
        return int(text)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    return kind(text)


def _check_toml_value(name: str, value: object) -> object:
    kind, optional = _base_type(name)
    if optional and value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is Path and isinstance(value, str):
        return Path(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{value!r} is not {_KIND_NAMES.get(kind, kind.__name__)}")
    return value


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and a flag for every settings field (absent unless given)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"TOML file of options [env {CONFIG_ENV}]",
    )
    for name, field in _FIELDS.items():
        kind, _ = _base_type(name)
        help_text = f"{field.metadata['help']} [env {env_name(name)}; default: {field.default}]"
        if kind is bool:
            parser.add_argument(
                flag_name(name),
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        parser.add_argument(
            flag_name(name),
            dest=name,
            type=_flag_parser(name),
            default=argparse.SUPPRESS,
            choices=field.metadata["choices"] or None,
            metavar=name.upper(),
            help=help_text,
        )


def _flag_parser(name: str) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return _parse_text(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = _base_type(name)[0].__name__
    return parse


def load_settings(
    flags: Mapping[str, object], environ: Mapping[str, str], config_file: Path | None = None
) -> LoadedSettings:
    """Settings from parsed ``flags`` (only those given), ``environ`` and a TOML file."""
    values: dict[str, object] = {}
    sources = dict.fromkeys(_FIELDS, DEFAULT_SOURCE)
    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    if config_file is not None:
        for name, value in _read_toml(config_file).items():
            source = f"file {config_file}"
            if name not in _FIELDS:
                raise ConfigError(name, "is not a muxs option", source)
            try:
                values[name] = _check_toml_value(name, value)
            except ValueError as exc:
                raise ConfigError(name, str(exc), source) from None
            sources[name] = source
    for name in _FIELDS:
        if env_name(name) in environ:
            try:
                values[name] = _parse_text(name, environ[env_name(name)])
            except ValueError as exc:
                raise ConfigError(name, str(exc), f"env {env_name(name)}") from None
            sources[name] = f"env {env_name(name)}"
        if name in flags:
            values[name] = flags[name]
            sources[name] = f"flag {flag_name(name)}"
    for name, variable in AWS_ENV.items():
        if sources[name] == DEFAULT_SOURCE and environ.get(variable):
            values[name] = environ[variable]
            sources[name] = f"env {variable}"
    if _tracing_asked(flags, environ):
        values["otel"] = True
        sources["otel"] = f"env {OTEL_EXPORTER_ENV}"
    try:
        settings = ServerSettings(**values)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(exc.option, exc.problem, sources[exc.option]) from None
    return LoadedSettings(settings, sources)


def _tracing_asked(flags: Mapping[str, object], environ: Mapping[str, str]) -> bool:
    """Whether OpenTelemetry's standard variable asks for traces while neither ``--otel`` nor
    ``MUXS_OTEL`` says (the OpenTelemetry SDK reads the other ``OTEL_*`` variables itself)."""
    exporter = environ.get(OTEL_EXPORTER_ENV, "none").strip()
    return exporter not in ("", "none") and "otel" not in flags and env_name("otel") not in environ


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
