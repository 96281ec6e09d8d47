"""The performance targets, judged from what ``make bench`` wrote, as the README's table.

``make bench-table RESULTS="bench-results/a/result.json bench-results/b/recovery.json ..."``
reads the runs, keeps of each the figures a target is judged on (``docs/performance-runs.json``,
committed: the record the table is made from) and writes the table between the README's
markers. Each target is met, missed (by how much), or not measured (no run of its kind among
the results). Nothing here measures: it only reads.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

ROOT = Path(__file__).resolve().parents[2]
RECORD = ROOT / "docs" / "performance-runs.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- performance-table: begin (make bench-table) -->", "<!-- performance-table: end -->"
BUDGET = 30.0
"""Seconds: the order saga's budget, within which every accepted order must be final."""

KEPT = (
    "offered_per_minute",
    "achieved_per_minute",
    "orders_accepted",
    "orders_unfinished",
    "refused_503",
    "latency_seconds",
    "aws_requests_per_order",
    "commits_per_order",
    "six_services_cpu_seconds_per_order",
)


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool | None
    """None: not measured (no run of that kind)."""
    shortfall: str = ""


def record(paths: list[Path]) -> dict[str, Any]:
    """The figures of ``paths`` (``result.json`` or ``recovery.json`` files) a target needs."""
    runs: list[dict[str, Any]] = []
    recoveries: list[dict[str, Any]] = []
    knees: list[float] = []
    peers: list[float] = []
    for path in paths:
        data = json.loads(path.read_text())
        if "seconds_from_restart_to_all_final" in data:
            recoveries.append({k: data[k] for k in ("orders", "replicas", "seconds_from_restart_to_all_final", "unfinished")})
            continue
        if "peer" in data:  # a peer's own run of the same saga (see docs/performance.md)
            peers.append(float(data["orders_per_minute"]))
            continue
        duration = float(data["config"]["duration"])
        for run in data["runs"]:
            kept = {k: run[k] for k in KEPT} | {"duration": duration, "replicas": data["replicas"]}
            if run.get("idle"):
                kept["idle_cpu_percent"] = run["idle"]["six_services_cpu_percent"]
            runs.append(kept)
        if data.get("knee_per_minute"):
            knees.append(float(data["knee_per_minute"]))
    return {"runs": runs, "knees": knees, "recoveries": recoveries, "peers": peers}


def _at(runs: list[dict[str, Any]], rate: float, *, least_duration: float = 0) -> dict[str, Any] | None:
    """The last run offered ``rate`` (within 5 %) for at least ``least_duration`` seconds."""
    found = [r for r in runs if abs(r["offered_per_minute"] - rate) <= 0.05 * rate and r["duration"] >= least_duration]
    return found[-1] if found else None


def _most(name: str, value: float, limit: float, unit: str, fmt: str = "{:.3g}") -> Verdict:
    met = value <= limit
    over = "" if met else f"{value / limit:.1f}x the target ({fmt.format(value - limit)} {unit} over)"
    return Verdict(name, f"{fmt.format(value)} {unit}", met, over)


def _least(name: str, value: float, limit: float, unit: str, fmt: str = "{:,.0f}") -> Verdict:
    met = value >= limit
    under = "" if met else f"{value / limit:.0%} of the target ({fmt.format(limit - value)} {unit} short)"
    return Verdict(name, f"{fmt.format(value)} {unit}", met, under)


def _absent(name: str, why: str) -> Verdict:
    return Verdict(name, f"not measured: {why}", None)


def judge(figures: dict[str, Any]) -> list[Verdict]:
    """Every target of the performance work, judged on ``figures`` (what :func:`record` keeps)."""
    runs, verdicts = figures["runs"], []
    at_1000 = _at(runs, 1000)
    for name, key, limit, unit in (
        ("at 1,000/min: p99 under 1 s", None, 1.0, "s"),
        ("at 1,000/min: CPU per order in the six services at most 0.02 s", "six_services_cpu_seconds_per_order", 0.02, "s"),
        ("at 1,000/min: commits per order at most 8", "commits_per_order", 8, "commits"),
        ("at 1,000/min: AWS requests per order at most 5", "aws_requests_per_order", 5, "requests"),
    ):
        if at_1000 is None:
            verdicts.append(_absent(name, "no run at 1,000/min"))
            continue
        value = at_1000["latency_seconds"]["p99"] if key is None else at_1000[key]
        verdicts.append(_most(name, value, limit, unit))
    knee = max(figures["knees"], default=None)
    name = "knee at least 2,000/min"
    verdicts.append(_least(name, knee, 2000, "/min") if knee else _absent(name, "no ramp (make bench RAMP=1)"))
    stretch = _at(runs, 3000, least_duration=300)
    name = "stretch: 3,000/min for 5 min with p99 under 3 s"
    best = max((r["achieved_per_minute"] for r in runs), default=0.0)
    if stretch is None and best and best < 0.95 * 3000:  # no run finished as many, for any time
        verdicts.append(_least(name, best, 3000, "/min"))
    elif stretch is None:
        verdicts.append(_absent(name, "no 5-minute run at 3,000/min"))
    else:
        achieved, p99 = stretch["achieved_per_minute"], stretch["latency_seconds"]["p99"]
        met = achieved >= 0.95 * 3000 and p99 < 3
        verdicts.append(Verdict(name, f"{achieved:,.0f}/min, p99 {p99:.2f} s", met, "" if met else "not sustained"))
    verdicts += _overload(runs, knee)
    recoveries = [r for r in figures["recoveries"] if r["orders"] >= 500]
    name = "500 sagas in flight final within 10 s of the orchestrator's restart"
    if not recoveries:
        verdicts.append(_absent(name, "no run of make bench RECOVERY=500"))
    else:
        seconds = recoveries[-1]["seconds_from_restart_to_all_final"]
        verdicts.append(_most(name, math.inf if seconds is None else seconds, 10, "s"))
    idle = [r["idle_cpu_percent"] for r in runs if "idle_cpu_percent" in r]
    name = "idle under 1 % of a core"
    verdicts.append(_most(name, idle[-1], 1.0, "% of a core") if idle else _absent(name, "no run with IDLE"))
    name = "orders/min as many as DBOS Transact runs the same saga (ratio 1.0)"
    best = max((r["achieved_per_minute"] for r in runs), default=None)
    if not figures["peers"] or best is None:
        verdicts.append(_absent(name, "no peer run beside it"))
    else:
        verdicts.append(_least(name, best / figures["peers"][-1], 1.0, "", fmt="{:.2f}"))
    return verdicts


def _overload(runs: list[dict[str, Any]], knee: float | None) -> list[Verdict]:
    """At 2x and 4x the knee for 60 s: goodput, work per order and every accepted order final."""
    verdicts: list[Verdict] = []
    base = _at(runs, knee) if knee else None
    for factor in (2, 4):
        name = f"at {factor}x the knee for 60 s: goodput at least 90 % of the knee's, work per order within 20 %"
        run = _at(runs, factor * knee, least_duration=60) if knee else None
        if base is None or run is None:
            verdicts.append(_absent(name, "no ramp and no 60 s run at that rate"))
            continue
        goodput = run["achieved_per_minute"] / base["achieved_per_minute"]
        work = {
            key: run[key] / base[key]
            for key in ("aws_requests_per_order", "commits_per_order", "six_services_cpu_seconds_per_order")
            if base[key]
        }
        late = run["orders_unfinished"] or run["latency_seconds"]["max"] > BUDGET
        worst = max(work.values(), default=1.0)
        met = goodput >= 0.9 and worst <= 1.2 and not late
        measured = f"goodput {goodput:.0%} of the knee's, work up to {worst:.2f}x, " + (
            "some accepted orders late or unfinished" if late else "every accepted order final within the budget"
        )
        misses = [f"goodput {0.9 - goodput:.0%} short"] if goodput < 0.9 else []
        misses += [f"{key.replace('_', ' ')} {ratio:.2f}x" for key, ratio in work.items() if ratio > 1.2]
        verdicts.append(Verdict(name, measured, met, "; ".join(misses + (["late orders"] if late else []))))
    return verdicts


def table(verdicts: list[Verdict]) -> str:
    marks = {True: "met", False: "**missed**", None: "—"}
    lines = ["| target | measured | | by how much |", "|---|---|---|---|"]
    lines += [f"| {v.target} | {v.measured} | {marks[v.met]} | {v.shortfall} |" for v in verdicts]
    return "\n".join(lines)


def block(figures: dict[str, Any]) -> str:
    """The README's generated block: the table and where its figures come from."""
    return "\n".join(
        [
            BEGIN,
            table(judge(figures)),
            "",
            "Generated by `make bench-table` from [docs/performance-runs.json](docs/performance-runs.json); what limits",
            "each missed target, and the runs, in [docs/measurements.md](docs/measurements.md#performance).",
            END,
        ]
    )


def rewrite(text: str, figures: dict[str, Any]) -> str:
    """``text`` (the README) with its block regenerated."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + block(figures) + text[end:]


def main(
    results: list[Path] = typer.Argument(None, help="result.json / recovery.json files (none: the committed record)"),
    check: bool = typer.Option(False, help="only check that the README's table is what the record gives"),
) -> None:
    """Judge the performance targets and write the README's table (and the record, from RESULTS)."""
    if results:
        RECORD.write_text(json.dumps(record(results), indent=1) + "\n")
    figures = json.loads(RECORD.read_text())
    text = README.read_text()
    new = rewrite(text, figures)
    if check:
        if new != text:
            sys.exit("README.md's performance table is not what docs/performance-runs.json gives: run make bench-table")
        return
    README.write_text(new)
    print(table(judge(figures)))


if __name__ == "__main__":
    typer.run(main)
