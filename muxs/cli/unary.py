"""Client commands for the unary calls: hello, square, read, write."""

from __future__ import annotations

import argparse

from muxs.cli._common import Subparsers, add_client_command
from muxs.client import Client


async def _hello(client: Client, args: argparse.Namespace) -> None:
    print((await client.say_hello(args.name)).message)


async def _square(client: Client, args: argparse.Namespace) -> None:
    print((await client.square(args.value)).value)


async def _read(client: Client, args: argparse.Namespace) -> None:
    print((await client.read(args.path)).text)


async def _write(client: Client, args: argparse.Namespace) -> None:
    print((await client.write(args.path, args.text)).code)


def register(subparsers: Subparsers) -> None:
    hello = add_client_command(subparsers, "hello", "call Greeter.SayHello", _hello)
    hello.add_argument("name")
    square = add_client_command(
        subparsers, "square", "call Greeter.Square (returns the square root)", _square
    )
    square.add_argument("value", type=float)
    read = add_client_command(
        subparsers, "read", "print a file's text (FileController.Read)", _read
    )
    read.add_argument("path")
    write = add_client_command(
        subparsers, "write", "replace a file's text (FileController.Write)", _write
    )
    write.add_argument("path")
    write.add_argument("text")
