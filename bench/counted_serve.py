"""`muxs serve`, in a process that also says how many memory blocks Python holds.

    python -m bench.counted_serve serve --port 0 --root DIR ...

Each line read on stdin is answered on stdout with ``sys.getallocatedblocks()`` once the
garbage collector has run: the blocks live Python objects hold, which a leak of them grows,
whatever the allocator keeps of a busier moment's peak (RSS keeps it: a loaded machine's
backlog raised it without a leak). The soak (``bench/soak.py``) asks at quiet moments.

Before each count, h2 forgets the closed streams it remembers per connection (up to 2^16 a
connection, ``H2Connection.MAX_CLOSED_STREAMS``, to answer late frames on them): a bounded
memory, but one that grows by a couple of blocks a call until then, which would hide a leak
of that size. At a quiet moment no frame comes for them.
"""

from __future__ import annotations

import gc
import sys
import threading
from typing import TextIO

from h2.connection import H2Connection

from muxs.cli import main as muxs_main


def answer_counts(requests: TextIO, answers: TextIO) -> None:
    """Answer each line of ``requests`` with the blocks held after a collection."""
    for _ in requests:
        for thing in gc.get_objects():
            if isinstance(thing, H2Connection):
                thing._closed_streams.clear()
        gc.collect()
        answers.write(f"{sys.getallocatedblocks()}\n")
        answers.flush()


def main(argv: list[str] | None = None) -> int:
    threading.Thread(target=answer_counts, args=(sys.stdin, sys.stdout), daemon=True).start()
    return muxs_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
