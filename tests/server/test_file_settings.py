"""The FileController's settings: their sources and their validation."""

from __future__ import annotations

import pytest

from muxs import ConfigError, ServerSettings
from muxs.server.config import load_settings


def test_file_settings_come_from_flags_environment_and_defaults() -> None:
    environ = {"MUXS_CREATE_DIRS": "false", "MUXS_MAX_FILE_BYTES": "1048576"}
    loaded = load_settings({"error_style": "seed"}, environ)
    assert loaded.settings.create_dirs is False
    assert loaded.settings.max_file_bytes == 1048576
    assert loaded.settings.error_style == "seed"
    assert loaded.settings.chunk_bytes == 65536


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"chunk_bytes": 1023}, "chunk_bytes: 1023 is not between 1024 and 4193280"),
        ({"chunk_bytes": 4 * 1024 * 1024}, "chunk_bytes: 4194304 is not between 1024 and 4193280"),
        ({"max_file_bytes": 0}, "max_file_bytes: 0 is below 1"),
        ({"error_style": "grpc"}, "error_style: 'grpc' is not one of status, seed"),
    ],
)
def test_invalid_file_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(**values)  # type: ignore[arg-type]
    assert str(caught.value) == message
