"""Fuzz the request path coverage-guided with atheris (``tox -e fuzz`` bounds the time).

    python -m tests.reliability.fuzz [libFuzzer flags] CORPUS_DIR

Only muxs, its generated code, betterproto2 and grpclib are instrumented (everything
would take minutes). An empty CORPUS_DIR is seeded with one good call per method. The
target is tests/reliability/fuzz_target.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["muxs", "muxs_api", "betterproto2", "grpclib"]):
    from tests.reliability.fuzz_target import Target, seeds


def main() -> None:
    target = Target()
    corpus = [Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")]
    if corpus and not any(corpus[0].glob("*")):
        corpus[0].mkdir(parents=True, exist_ok=True)
        for number, seed in enumerate(seeds(target)):
            (corpus[0] / f"seed-{number}").write_bytes(seed)
    atheris.Setup(sys.argv, target.check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
