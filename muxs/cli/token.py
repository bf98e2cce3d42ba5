"""``muxs token new``: a fresh static API token and the entry that grants it."""

from __future__ import annotations

import argparse
import re

from muxs.auth.scopes import SCOPES
from muxs.cli._common import EXIT_OK, Subparsers

#: A scope as a tokens file may name one: muxs's own, or one of your hosted services'.
_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")


def _scope(value: str) -> str:
    if not _SCOPE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a scope (letters, digits and . _ : / -, at most 128)"
        )
    return value


def _new(args: argparse.Namespace) -> int:
    from muxs.server.verification.static_tokens import new_token  # the server's token files

    token, entry = new_token(args.subject, dict.fromkeys(args.scopes))
    print(f"token: {token}")
    print()
    print("# Add to the server's tokens file (--auth-tokens). It holds the token's SHA-256 only:")
    print("# the token is shown this once; give it to the client (e.g. as MUXS_TOKEN).")
    print(entry)
    return EXIT_OK


def register(subparsers: Subparsers) -> None:
    token = subparsers.add_parser("token", help="manage static API tokens")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    new = actions.add_parser(
        "new",
        help="print a new random token and its entry for the tokens file",
        description="Print a new random API token once, and the [[token]] entry (its SHA-256, "
        "subject and scopes) to add to the file given to `muxs serve --auth-tokens`.",
    )
    new.add_argument("--subject", required=True, help="who the token identifies")
    new.add_argument(
        "--scopes",
        nargs="+",
        required=True,
        type=_scope,
        metavar="SCOPE",
        help=f"what it may call: muxs's {', '.join(SCOPES)}, or your own services' scopes "
        "(the server refuses a tokens file naming a scope no service declares)",
    )
    new.set_defaults(handler=_new)
