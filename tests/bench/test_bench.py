"""The benchmark harness on a tiny load: real h2load against the floor server."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench import report
from bench.__main__ import base_kinds
from bench.__main__ import main as bench_main
from bench.h2load import Load
from bench.run import NOT_AVAILABLE, OK, Placement, benchmark, probe
from bench.scenarios import QUICK, scenarios, unary
from bench.servers import FLOOR, running

TINY = Load(clients=2, streams=2, duration=0.3, warm_up=0.1)


@pytest.mark.slow
def test_probe_tells_ok_from_unimplemented_and_wrong(tmp_path: Path) -> None:
    hello = unary(1, 1, QUICK)
    missing = replace(hello, path="/muxs.Greeter/NoSuchCall")
    wrong = replace(hello, check=lambda replies: (_ for _ in ()).throw(AssertionError("nope")))
    with running(FLOOR, tmp_path, tmp_path, cpus=None) as server:
        assert probe(server, hello) == OK
        assert probe(server, missing) == NOT_AVAILABLE
        assert probe(server, wrong) == "error: wrong reply: nope"


@pytest.mark.slow
def test_a_run_reports_figures_and_na_for_an_unimplemented_call(tmp_path: Path) -> None:
    hello = replace(unary(2, 2, QUICK), load=TINY)
    stream = replace(next(s for s in scenarios(QUICK, []) if s.key == "server-stream"), load=TINY)
    missing = replace(hello, key="missing", title="Missing", path="/muxs.Greeter/NoSuchCall")
    chosen = [hello, stream, missing]
    cells = benchmark([FLOOR], chosen, 2, tmp_path, tmp_path, Placement(None, None))

    rows = report.rows(chosen, cells)
    by_title = {row.title: row for row in rows}
    assert [row.title for row in rows] == [
        "SayHello 2x2",
        "SayHello 2x2 per core",
        "SayHello 2x2 p50",
        "SayHello 2x2 p99",
        "LotsOfReplies x200",
        "LotsOfReplies x200 per core",
        "Missing",
        "Missing per core",
        "Missing p50",
        "Missing p99",
    ]
    assert len(by_title["SayHello 2x2"].runs["floor"]) == 2
    hello_rate = by_title["SayHello 2x2"].median["floor"]
    stream_rate = by_title["LotsOfReplies x200"].median["floor"]
    assert hello_rate is not None
    assert hello_rate > 0
    assert stream_rate is not None
    assert stream_rate > 0  # how it compares with hello_rate is a measurement, not a check
    per_core = by_title["SayHello 2x2 per core"].median["floor"]
    assert per_core is not None
    assert per_core > 0
    assert by_title["Missing"].median["floor"] is None

    text = report.table(rows, ["floor"], [("floor", "floor")])
    assert "| Missing | req/s | n/a | n/a |" in text
    assert "| SayHello 2x2 | req/s | " in text
    assert "| LotsOfReplies x200 | msg/s | " in text  # replies counted, not calls

    out = tmp_path / "out.json"
    report.write_json(out, {"rows": [row.as_json([("floor", "floor")]) for row in rows]})
    written = json.loads(out.read_text())["rows"]
    assert written[-1]["status"] == {"floor": "n/a"}
    assert written[0]["ratios"] == {"floor/floor": 1.0}
    report.chart(tmp_path / "chart.png", "tiny", rows, ["floor"])
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")


def test_the_base_suite_runs_the_base_venv_and_hides_its_rust_codec(tmp_path: Path) -> None:
    (tmp_path / "bench" / "no_rust_codec").mkdir(parents=True)
    python = str(tmp_path / ".venv" / "bin" / "python")
    kinds = {kind.name: kind for kind in base_kinds(tmp_path)}

    assert list(kinds) == ["muxs-base", "muxs", "muxs-fast-base", "muxs-fast"]
    assert kinds["muxs-base"].command[:4] == (python, "-P", "-m", "muxs")
    assert kinds["muxs-base"].pythonpath == (str(tmp_path / "bench" / "no_rust_codec"),)
    assert kinds["muxs-fast-base"].command[0] == python
    assert kinds["muxs-fast-base"].pythonpath == ()
    assert kinds["muxs"].command[0] == kinds["muxs-fast"].command[0] == sys.executable


def test_the_base_suite_needs_the_base_venv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench_main(["--suite", "base", "--base", str(tmp_path)])
    assert exited.value.code == 2
    assert f"--base: no venv at {tmp_path / '.venv'}" in capsys.readouterr().err
