"""Client commands for files of any size: upload, download, ls, stat, rm."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, TextIO

from muxs.api import FileInfo
from muxs.cli._common import EXIT_USAGE, Subparsers, add_client_command
from muxs.client import Client

# tqdm's default with the elapsed time left out, so that the rate and the time left (ETA)
# still fit a narrow terminal; the bar takes what width remains.
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {rate_fmt} ETA {remaining}"


class Progress:
    """Counts the bytes of a transfer; if ``stream`` is a terminal, tqdm draws a bar there
    with the rate and time left, as wide as the terminal is (and redrawn when it changes)."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.done = 0
        self._stream = stream if stream.isatty() else None
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        if self._stream is None:
            return
        if self._bar is None:
            from tqdm import tqdm  # on use: ~50 ms to import

            self._bar = tqdm(
                desc=self.label,
                total=total,
                file=self._stream,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                dynamic_ncols=True,
                bar_format=BAR_FORMAT,
            )
        self._bar.total = max(total, done)
        self._bar.update(done - self._bar.n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def _upload(client: Client, args: argparse.Namespace) -> None:
    progress = Progress(f"upload {args.remote}", sys.stderr)
    try:
        status = await client.upload(args.local, args.remote, progress=progress)
    finally:
        progress.finish()
    print(f"uploaded {progress.done} bytes to {args.remote} (sha256 {status.sha256})")


async def _download(client: Client, args: argparse.Namespace) -> None:
    local = args.local or PurePosixPath(args.remote).name
    if local in ("", ".", ".."):
        print(f"muxs download: {args.remote!r} has no file name; give LOCAL", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
    progress = Progress(f"download {args.remote}", sys.stderr)
    try:
        size = await client.download(args.remote, local, progress=progress)
    finally:
        progress.finish()
    print(f"downloaded {size} bytes to {local}")


def _mtime(info: FileInfo) -> datetime:
    return datetime.fromtimestamp(info.mtime).astimezone()


async def _ls(client: Client, args: argparse.Namespace) -> None:
    entries = sorted([info async for info in client.list(args.path)], key=lambda i: i.name)
    for info in entries:
        kind, suffix = ("d", "/") if info.is_dir else ("-", "")
        when = _mtime(info).strftime("%Y-%m-%d %H:%M")
        print(f"{kind} {info.size:>12} {when} {info.name}{suffix}")


async def _stat(client: Client, args: argparse.Namespace) -> None:
    info = await client.stat(args.path)
    print(f"name: {info.name}")
    print(f"type: {'directory' if info.is_dir else 'file'}")
    print(f"size: {info.size}")
    print(f"mtime: {_mtime(info).isoformat()}")


async def _rm(client: Client, args: argparse.Namespace) -> None:
    await client.delete(args.path)


def register(subparsers: Subparsers) -> None:
    upload = add_client_command(
        subparsers,
        "upload",
        "replace a remote file with a local file of any size (progress bar on a terminal)",
        _upload,
        streaming=True,
    )
    upload.add_argument("local", help="local file to send")
    upload.add_argument("remote", help="path under the server's root")
    download = add_client_command(
        subparsers,
        "download",
        "save a remote file of any size locally (progress bar on a terminal)",
        _download,
        streaming=True,
    )
    download.add_argument("remote", help="path under the server's root")
    download.add_argument(
        "local", nargs="?", help="where to save it (default: its name, in this directory)"
    )
    ls = add_client_command(subparsers, "ls", "list a remote directory", _ls)
    ls.add_argument("path", nargs="?", default="", help="directory (default: the root)")
    stat = add_client_command(subparsers, "stat", "describe a remote file or directory", _stat)
    stat.add_argument("path")
    rm = add_client_command(subparsers, "rm", "delete a remote file", _rm)
    rm.add_argument("path")
