"""Client commands for the streaming calls: replies, greet, chat.

Each reply is printed (and flushed) as it arrives, so a pipe sees it at once.
"""

from __future__ import annotations

import argparse
import sys

from muxs.cli._common import Subparsers, add_client_command
from muxs.client import MAX_COUNT, Client
from muxs.sync import iterate_in_thread


def _count(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count from 0 to {MAX_COUNT}")
    return int(text)


async def _replies(client: Client, args: argparse.Namespace) -> None:
    async for reply in client.lots_of_replies(args.name, args.count):
        print(reply.index, reply.message, flush=True)


async def _greet(client: Client, args: argparse.Namespace) -> None:
    print((await client.lots_of_greetings(args.names)).message)


async def _chat(client: Client, args: argparse.Namespace) -> None:
    names = (line.rstrip("\r\n") for line in sys.stdin if line.strip())
    async for reply in client.bidi_hello(iterate_in_thread(names)):
        print(reply.message, flush=True)


def register(subparsers: Subparsers) -> None:
    replies = add_client_command(
        subparsers,
        "replies",
        "print COUNT numbered greetings as they stream in (Greeter.LotsOfReplies)",
        _replies,
        streaming=True,
    )
    replies.add_argument("name")
    replies.add_argument(
        "--count", type=_count, default=0, help="how many (default 0: the server's default, 10)"
    )
    greet = add_client_command(
        subparsers,
        "greet",
        "send every NAME in one stream, print the one greeting (Greeter.LotsOfGreetings)",
        _greet,
    )
    greet.add_argument("names", nargs="*", metavar="NAME")
    add_client_command(
        subparsers,
        "chat",
        "send each line of stdin as a name, print each greeting as it comes (Greeter.BidiHello)",
        _chat,
        streaming=True,
    )
