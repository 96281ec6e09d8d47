"""Figures from measurements: the summary of each rate, the rich table, the JSON and the plots."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from . import profile  # noqa: E402
from .run import Measurement  # noqa: E402
from .stats import KEEP_UP, P99_LIMIT, RatePoint, by_service, knee, latency  # noqa: E402

SERVICE_MODULES = ("order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc")
BUCKET = 5.0
"""Seconds per point of the latency-over-time plot."""


def summary(m: Measurement, capacity: dict[str, float]) -> dict[str, Any]:
    """The figures of one rate. Per-order figures divide what the counters moved between the end of
    the warm-up and the end of the drain by the orders placed after the warm-up; a service's CPU
    and AWS requests are those of all its processes together."""
    measured = [o for o in m.orders if o.measured]
    n = max(1, len([o for o in measured if o.saga_id]))
    window = m.load_end - m.warm_end
    finished_in_window = sum(1 for o in m.orders if o.finished is not None and m.warm_end <= o.finished <= m.load_end)
    times = latency([o.latency for o in measured if o.latency is not None])
    by_operation: Counter[str] = Counter()
    for module, counts in m.after.aws.items():
        by_operation.update(counts)
        by_operation.subtract(m.before.aws.get(module, Counter()))
    commits = {db: m.after.commits[db] - m.before.commits.get(db, 0) for db in m.after.commits}
    cpu_by_process = {name: (m.after.cpu[name] - m.before.cpu.get(name, 0.0)) / n for name in m.after.cpu}
    cpu = by_service(cpu_by_process)
    services_cpu = sum(cpu[module] for module in SERVICE_MODULES)
    aws_per_order = sum(by_operation.values()) / n
    commits_per_order = sum(commits.values()) / n
    orders_per_second = m.rate / 60
    statuses = Counter(o.status or o.error or "not placed" for o in measured)
    return {
        "offered_per_minute": m.rate,
        "replicas": m.config.replicas,
        "processes": m.processes,
        "achieved_per_minute": 60 * finished_in_window / window if window > 0 else 0.0,
        "orders_measured": len(measured),
        "orders_accepted": sum(1 for o in measured if o.saga_id),
        "orders_unfinished": sum(1 for o in measured if o.saga_id and o.finished is None),
        "post_errors": sum(1 for o in measured if o.error),
        "refused_503": sum(1 for o in measured if o.error == "HTTP 503"),
        # Orders the sandbox would confirm that ended otherwise: the system's own doing
        # (a step timed out while its command or reply waited in a queue).
        "confirmable_cancelled": sum(1 for o in measured if o.kind == "success" and o.status and o.status != "completed"),
        "statuses": dict(statuses),
        "latency_seconds": asdict(times),
        "drain_seconds": m.drain_seconds,
        "aws_requests_per_order": aws_per_order,
        "aws_requests_per_order_by_operation": {op: c / n for op, c in sorted(by_operation.items()) if c},
        "commits_per_order": commits_per_order,
        "commits_per_order_by_database": {db: c / n for db, c in sorted(commits.items())},
        "cpu_seconds_per_order": cpu,
        "cpu_seconds_per_order_by_process": cpu_by_process,
        "six_services_cpu_seconds_per_order": services_cpu,
        "orders_per_minute_per_vcpu": 60 / services_cpu if services_cpu > 0 else None,
        "commits_per_second": commits_per_order * orders_per_second,
        "aws_requests_per_second": aws_per_order * orders_per_second,
        "commits_per_second_of_capacity": commits_per_order * orders_per_second / capacity["postgres_commits_per_second"],
        "aws_requests_per_second_of_capacity": aws_per_order * orders_per_second / capacity["sqs_send_message_batch_per_second"],
        "peak_outbox_backlog": max((s["outbox"] for s in m.samples), default=0),
        "peak_queue_depth": max((s["queued"] for s in m.samples), default=0),
        "bench_queries_subtracted": m.own_queries,
        "idle": m.idle,
        "logs": m.workdir,
        **({"profile": m.extra["profile"]} if m.extra.get("profile") else {}),
    }


def series(m: Measurement) -> dict[str, Any]:
    """Throughput and latency over time (seconds since the first order), and the sampled backlogs."""
    end = max([m.load_end - m.started] + [o.finished - m.started for o in m.orders if o.finished is not None])
    seconds = int(end) + 1
    placed, finished = [0] * seconds, [0] * seconds
    for o in m.orders:
        placed[min(seconds - 1, int(o.sent - m.started))] += 1
        if o.finished is not None:
            finished[min(seconds - 1, max(0, int(o.finished - m.started)))] += 1
    buckets: dict[int, list[float]] = {}
    for o in m.orders:
        if o.latency is not None:
            buckets.setdefault(int((o.sent - m.started) // BUCKET), []).append(o.latency)
    return {
        "placed_per_second": placed,
        "finished_per_second": finished,
        "latency_by_send_time": [{"t": (b + 0.5) * BUCKET, **asdict(latency(v))} for b, v in sorted(buckets.items())],
        "samples": m.samples,
        "warmup_seconds": m.warm_end - m.started,
        "load_seconds": m.load_end - m.started,
    }


def ramp_points(runs: list[dict[str, Any]]) -> list[RatePoint]:
    return [
        RatePoint(r["offered_per_minute"], r["achieved_per_minute"], r["latency_seconds"]["p99"], r["orders_unfinished"])
        for r in runs
    ]


def write(result: dict[str, Any], out: Path) -> list[Path]:
    """``result.json`` and the plots in ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "result.json"]
    written[0].write_text(json.dumps(result, indent=1, default=str))
    for run in result["runs"]:
        written.append(plot_run(run, out / f"rate-{run['offered_per_minute']:g}.png"))
        if run.get("profile"):
            written.append(out / f"profile-{run['offered_per_minute']:g}.txt")
            written[-1].write_text(profile.text(run["profile"]))
    if result["config"]["ramp"]:
        written.append(plot_ramp(result["runs"], result["knee_per_minute"], out / "ramp.png"))
    return written


def _rolling(values: list[int], width: int = 5) -> list[float]:
    """Per-second counts as a rate per minute, averaged over the last ``width`` seconds."""
    return [60 * sum(values[max(0, i - width + 1) : i + 1]) / min(width, i + 1) for i in range(len(values))]


def plot_run(run: dict[str, Any], path: Path) -> Path:
    s = run["series"]
    figure, (throughput, times, backlog) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    seconds = list(range(len(s["placed_per_second"])))
    throughput.plot(seconds, _rolling(s["placed_per_second"]), label="placed")
    throughput.plot(seconds, _rolling(s["finished_per_second"]), label="reached a final status")
    throughput.set_ylabel("orders per minute (5 s mean)")
    throughput.set_title(f"{run['offered_per_minute']:g} orders/min offered, {run['achieved_per_minute']:.0f} achieved")
    points = s["latency_by_send_time"]
    for key in ("p50", "p95", "p99", "max"):
        times.plot([p["t"] for p in points], [p[key] for p in points], marker=".", label=key)
    times.axhline(P99_LIMIT, color="grey", linestyle=":", linewidth=1)
    times.set_ylabel(f"latency (s), by send time ({BUCKET:g} s buckets)")
    backlog.plot([x["t"] for x in s["samples"]], [x["outbox"] for x in s["samples"]], label="unpublished outbox rows")
    backlog.plot([x["t"] for x in s["samples"]], [x["queued"] for x in s["samples"]], label="messages in queues")
    backlog.set_ylabel("backlog")
    backlog.set_xlabel("seconds since the first order")
    for axes in (throughput, times, backlog):
        axes.axvspan(0, s["warmup_seconds"], color="grey", alpha=0.1)
        axes.axvline(s["load_seconds"], color="grey", linestyle="--", linewidth=1)
    return _save(figure, (throughput, times, backlog), path)


def plot_ramp(runs: list[dict[str, Any]], knee_rate: float | None, path: Path) -> Path:
    figure, (rates, p99) = plt.subplots(2, 1, figsize=(8, 8), sharex=True)
    offered = [r["offered_per_minute"] for r in runs]
    rates.plot(offered, offered, linestyle=":", color="grey", label="offered")
    rates.plot(offered, [r["achieved_per_minute"] for r in runs], marker="o", label="achieved")
    rates.set_ylabel("orders per minute")
    p99.plot(offered, [r["latency_seconds"]["p99"] for r in runs], marker="o", color="C3", label="p99")
    p99.axhline(P99_LIMIT, color="grey", linestyle=":", label=f"{P99_LIMIT:g} s")
    p99.set_ylabel("p99 latency (s)")
    p99.set_xlabel("offered orders per minute")
    for axes in (rates, p99):
        if knee_rate is not None:
            axes.axvline(knee_rate, color="C2", linestyle="--", label=f"knee {knee_rate:g}/min")
    return _save(figure, (rates, p99), path)


def _save(figure: Any, panels: tuple[Any, ...], path: Path) -> Path:
    """Legends and grids on every panel, then the PNG written and the figure freed."""
    for axes in panels:
        axes.legend(loc="upper left")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# --------------------------------------------------------------------------- the console
def table(result: dict[str, Any]) -> Table:
    runs = result["runs"]
    replicas = result["config"]["replicas"]
    processes = f"{replicas} process{'es' if replicas > 1 else ''} of each service"
    t = Table(title=f"make bench: whole order sagas, POST /orders to the saga's final status; {processes}")
    t.add_column("per rate")
    for run in runs:
        t.add_column(f"{run['offered_per_minute']:g}/min", justify="right")

    def row(label: str, value: Any, fmt: str = "{:.2f}") -> None:
        t.add_row(label, *(fmt.format(v) if v is not None else "-" for v in map(value, runs)))

    row("achieved orders/min", lambda r: r["achieved_per_minute"], "{:.0f}")
    row("orders measured (after warm-up)", lambda r: r["orders_measured"], "{}")
    row("  not finished / POST errors", lambda r: f"{r['orders_unfinished']} / {r['post_errors']}", "{}")
    row("  refused up front (503)", lambda r: r["refused_503"], "{}")
    row("  confirmable orders cancelled", lambda r: r["confirmable_cancelled"], "{}")
    for key in ("p50", "p95", "p99", "max"):
        row(f"latency {key} (s)", lambda r, key=key: r["latency_seconds"][key])
    row("AWS requests / order", lambda r: r["aws_requests_per_order"], "{:.1f}")
    row("PostgreSQL commits / order", lambda r: r["commits_per_order"], "{:.1f}")
    row("CPU s / order, six services (all processes)", lambda r: r["six_services_cpu_seconds_per_order"], "{:.3f}")
    for module in SERVICE_MODULES:
        row(f"  {module}", lambda r, m=module: r["cpu_seconds_per_order"].get(m), "{:.3f}")
    for process in ("emulator", "postgres", "bench"):
        row(f"CPU s / order, {process}", lambda r, p=process: r["cpu_seconds_per_order"].get(p), "{:.3f}")
    row("orders/min per vCPU (six services)", lambda r: r["orders_per_minute_per_vcpu"], "{:.0f}")
    row("peak outbox backlog", lambda r: r["peak_outbox_backlog"], "{}")
    row("peak queue depth", lambda r: r["peak_queue_depth"], "{}")
    row("commits/s ÷ PG capacity", lambda r: r["commits_per_second_of_capacity"], "{:.1%}")
    row("AWS req/s ÷ SendMessageBatch capacity", lambda r: r["aws_requests_per_second_of_capacity"], "{:.1%}")
    return t


def print_result(console: Console, result: dict[str, Any], written: list[Path]) -> None:
    console.print(table(result))
    c = result["capacity"]
    console.print(
        f"capacity of this machine: PostgreSQL {c['postgres_commits_per_second']:.0f} single-row commits/s, "
        f"endpoint {c['sqs_send_message_batch_per_second']:.0f} SendMessageBatch/s"
    )
    idle = next((r["idle"] for r in reversed(result["runs"]) if r["idle"]), None)
    if idle:
        console.print(
            f"idle ({idle['seconds']:.0f} s): six services {idle['six_services_cpu_percent']:.1f} % of one core "
            f"({', '.join(f'{m} {p:.1f}' for m, p in idle['cpu_percent_of_one_core'].items())}); "
            f"{idle['aws_requests_per_second']:.1f} AWS requests/s"
        )
    if result["config"]["ramp"]:
        k = result["knee_per_minute"]
        console.print(
            f"knee: {k:g} orders/min (p99 ≤ {P99_LIMIT:g} s, achieved ≥ {KEEP_UP:.0%} of offered)"
            if k is not None
            else f"knee: none (the lowest rate already missed p99 ≤ {P99_LIMIT:g} s or could not keep up)"
        )
    console.print("written: " + ", ".join(str(p) for p in written))


def knee_of(runs: list[dict[str, Any]]) -> float | None:
    return knee(ramp_points(runs))
