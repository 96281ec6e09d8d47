"""``python -m stack.bench --rate 300 --duration 60`` (``make bench RATE=300 DURATION=60``)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.engine import make_url

from .. import infra
from ..runner import pools_named
from . import profile as bench_profile
from . import report
from .run import Config, capacity, measure, new_stack, recovery, stop_together
from .stats import DEFAULT_MIX, P99_LIMIT, parse_mix

RAMP = "200,400,600,900,1200,1800,2400,3000"
EMULATORS = {"moto": "stack.emulator", "moto-plain": "moto.server"}
"""``--emulator``: the module the embedded emulator runs (``SAGA_EMULATOR_MODULE``)."""


def execute(config: Config, out: Path, console: Console) -> dict[str, Any]:
    """Run every rate of ``config``; write the JSON and the plots to ``out``; return the result."""
    runs: list[dict[str, Any]] = []
    machine: dict[str, float] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for index, rate in enumerate(config.rates):
            stack = new_stack(config)
            progress.console.print(f"{rate:g} orders/min: a fresh stack, prefix {stack.prefix}, logs in {stack.workdir}")
            with stack:
                if not machine:
                    progress.console.print(f"measuring this machine's capacity ({config.capacity_seconds:g} s each)")
                    machine = asyncio.run(capacity(stack, config.capacity_seconds))
                measurement = asyncio.run(measure(stack, rate, config, progress, idle=index == 0))
                stop_together(stack)
            run = report.summary(measurement, machine) | {"series": report.series(measurement)}
            runs.append(run)
            if config.ramp and (run["latency_seconds"]["p99"] > P99_LIMIT or run["orders_unfinished"]):
                progress.console.print(
                    f"p99 {run['latency_seconds']['p99']:.2f} s, {run['orders_unfinished']} orders not finished: the ramp stops"
                )
                break
    database = make_url(config.database_url).render_as_string(hide_password=True) if config.database_url else "embedded"
    config_json = asdict(config) | {"rates": list(config.rates), "token": None, "database_url": database}
    result = {
        "replicas": config.replicas,
        "config": config_json,
        "capacity": machine,
        "runs": runs,
        "knee_per_minute": report.knee_of(runs) if config.ramp else None,
    }
    written = report.write(result, out)
    report.print_result(console, result, written)
    return result


def main(
    rate: float = typer.Option(300, help="orders per minute (without --ramp)"),
    duration: float = typer.Option(60, help="seconds of measured load per rate"),
    warmup: float = typer.Option(10, help="seconds of load before the measurement starts"),
    mix: str = typer.Option(DEFAULT_MIX, help="kind=weight,...: success, decline, undeliverable, bounce, out_of_stock, ..."),
    ramp: bool = typer.Option(False, help=f"rising rates until the p99 passes {P99_LIMIT:g} s; prints the knee"),
    rates: str = typer.Option(RAMP, help="orders per minute of the ramp, comma-separated"),
    idle: float = typer.Option(
        60, help="seconds of idle measured after the first rate (0: none); a minute holds one metrics send per service"
    ),
    drain: float = typer.Option(60, help="seconds at most to wait for the last orders to finish"),
    capacity_seconds: float = typer.Option(3, help="seconds of each capacity measurement"),
    prefix: str = typer.Option("bench", help="name prefix on AWS_ENDPOINT_URL (make deploy-local PREFIX=bench)"),
    out: Path = typer.Option(Path("bench-results"), help="directory of the results (a subdirectory per run)"),
    recover: int = typer.Option(
        0, "--recovery", help="instead: this many orders in flight, the orchestrator killed and restarted; time to all final"
    ),
    replicas: int = typer.Option(1, min=1, help="processes of every service, the orchestrator's too"),
    profile: bool = typer.Option(False, help="sample every process with py-spy in the measured window (profile-<rate>.txt)"),
    emulator: str = typer.Option("moto", help="the embedded emulator: moto (with stack/emulator.py's patches) or moto-plain"),
    pools: str = typer.Option("", help="deployed or minimum: the pool sizes a deployment gets (empty: full pools)"),
) -> None:
    """Whole-saga throughput, latency and cost at a fixed rate, or along a ramp of rates."""
    config = Config(
        rates=tuple(float(r) for r in rates.split(",")) if ramp else (rate,),
        duration=duration,
        warmup=warmup,
        mix=parse_mix(mix),
        ramp=ramp,
        idle=idle,
        drain=drain,
        capacity_seconds=capacity_seconds,
        database_url=os.environ.get("DATABASE_URL"),
        endpoint=os.environ.get("AWS_ENDPOINT_URL"),
        prefix=prefix,
        replicas=replicas,
        profile=profile,
        emulator=emulator,
        pools=pools or None,
    )
    pools_named(config.pools)  # an unknown name stops here, saying which there are
    if emulator not in EMULATORS:
        sys.exit(
            f"--emulator {emulator}: one of {', '.join(EMULATORS)} (fauxqs, the faster SQS/SNS emulator on npm, "
            "needs Node 22.5 or newer; this machine's is older)"
        )
    if "SAGA_EMULATOR_MODULE" not in os.environ:  # a module named outright wins
        infra.EMULATOR_MODULE = EMULATORS[emulator]
    if profile and not bench_profile.available():
        sys.exit("--profile needs py-spy on PATH (pip install py-spy, a dev dependency: make venv)")
    console = Console() if Console().is_terminal else Console(width=160)
    if recover:
        execute_recovery(config, recover, out / time.strftime("%Y%m%d-%H%M%S"), console)
    else:
        execute(config, out / time.strftime("%Y%m%d-%H%M%S"), console)


def execute_recovery(config: Config, count: int, out: Path, console: Console) -> dict[str, Any]:
    # All of them must be accepted to be in flight: admission control is not what is measured here.
    os.environ.setdefault("ORDER_MAX_IN_FLIGHT", str(2 * count))
    os.environ.setdefault("ORDER_ADMISSION_TARGET_SECONDS", "0")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress, new_stack(config) as stack:
        result = asyncio.run(recovery(stack, count, config, progress))
        stop_together(stack)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recovery.json").write_text(json.dumps(result, indent=1))
    console.print(result)
    console.print(f"written: {out / 'recovery.json'}")
    return result


if __name__ == "__main__":
    # A SIGTERM unwinds like Ctrl-C: the stack of the rate being measured is stopped, not left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    typer.run(main)
