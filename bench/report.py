"""Turn measured cells into rows with ratios: a printed table, JSON and a PNG chart."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.run import NOT_AVAILABLE, Cell
from bench.scenarios import Scenario


@dataclass(frozen=True)
class Row:
    """One figure (throughput, p50 or p99) of one scenario on every server."""

    scenario: str
    title: str
    unit: str
    higher_is_better: bool
    status: dict[str, str]
    runs: dict[str, list[float]]
    median: dict[str, float | None]

    def ratio(self, subject: str, other: str) -> float | None:
        a, b = self.median.get(subject), self.median.get(other)
        return a / b if a is not None and b else None

    def as_json(self, ratios: Sequence[tuple[str, str]]) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "unit": self.unit,
            "better": "higher" if self.higher_is_better else "lower",
            "median": self.median,
            "runs": self.runs,
            "status": self.status,
            "ratios": {f"{a}/{b}": self.ratio(a, b) for a, b in ratios},
        }


def rows(scenarios: Sequence[Scenario], cells: Mapping[str, Mapping[str, Cell]]) -> list[Row]:
    out = []
    for scenario in scenarios:
        by_server = cells[scenario.key]
        status = {name: cell.status for name, cell in by_server.items()}
        figures = [
            ("values", scenario.title, scenario.unit, True),
            ("per_core", f"{scenario.title} per core", f"{scenario.unit}/core", True),
        ]
        if scenario.latency:
            figures += [
                ("p50_ms", f"{scenario.title} p50", "ms", False),
                ("p99_ms", f"{scenario.title} p99", "ms", False),
            ]
        for attribute, title, unit, higher in figures:
            runs = {name: list(getattr(cell, attribute)) for name, cell in by_server.items()}
            median = {name: cell.median(runs[name]) for name, cell in by_server.items()}
            out.append(Row(scenario.key, title, unit, higher, status, runs, median))
    return out


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _cell_text(row: Row, server: str, spread: bool = False) -> str:
    value = row.median[server]
    if value is None:
        return "n/a" if row.status[server] == NOT_AVAILABLE else "error"
    runs = row.runs[server]
    if spread and len(runs) > 1:
        return f"{_number(value)} ({_number(min(runs))}-{_number(max(runs))})"
    return _number(value)


def _ratio_text(row: Row, subject: str, other: str, spread: bool) -> str:
    """The ratio of the medians; with ``spread``, also of each run to the other server's run
    of the same round (the servers run interleaved), lowest-highest."""
    ratio = row.ratio(subject, other)
    if ratio is None:
        return "n/a"
    pairs = list(zip(row.runs[subject], row.runs[other], strict=False))
    if not spread or len(pairs) < 2 or not all(b for _, b in pairs):
        return f"{ratio:.2f}"
    paired = [a / b for a, b in pairs]
    return f"**{ratio:.2f}** ({min(paired):.2f}-{max(paired):.2f})"


def table(
    rows: Sequence[Row],
    servers: Sequence[str],
    ratios: Sequence[tuple[str, str]],
    spread: bool = False,
) -> str:
    """A Markdown table: each row's medians and ratios (n/a where a server lacks the call);
    with ``spread``, each median's lowest-highest run and each ratio's lowest-highest round."""
    header = ["figure", "unit", *servers, *(f"{a}/{b}" for a, b in ratios)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        ratio_texts = [_ratio_text(row, a, b, spread) for a, b in ratios]
        cells = [row.title, row.unit, *(_cell_text(row, s, spread) for s in servers), *ratio_texts]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def chart(path: Path, title: str, rows: Sequence[Row], servers: Sequence[str]) -> None:
    """One bar chart per row, a bar per server ("n/a" where it has none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(rows))
    lines = -(-len(rows) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3.2 * lines), squeeze=False)
    for axis, row in zip(axes.flat, rows, strict=False):
        heights = [row.median[s] or 0.0 for s in servers]
        bars = axis.bar(range(len(servers)), heights, color=[f"C{i}" for i in range(len(servers))])
        for bar, server in zip(bars, servers, strict=True):
            if row.median[server] is None:
                axis.annotate(
                    _cell_text(row, server),
                    (bar.get_x() + bar.get_width() / 2, 0),
                    ha="center",
                    va="bottom",
                )
        axis.set_xticks(range(len(servers)), servers, rotation=20, ha="right", fontsize=8)
        better = "higher" if row.higher_is_better else "lower"
        axis.set_title(f"{row.title}\n{row.unit}, {better} is better", fontsize=9)
    for axis in list(axes.flat)[len(rows) :]:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
