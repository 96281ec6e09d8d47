"""The pure parts of the benchmark: the order mix, percentiles, the knee of a ramp."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ..demo import SCENARIOS, Scenario
from ..runner import module_of

KINDS: dict[str, Scenario] = {
    "success": SCENARIOS[0],
    "out_of_stock": SCENARIOS[1],
    "unknown_sku": SCENARIOS[2],
    "decline": SCENARIOS[3],
    "undeliverable": SCENARIOS[4],
    "bounce": SCENARIOS[5],
    "refund_fail": SCENARIOS[6],
}
"""The kinds of order a mix may name, each made as the demo's scenario of that outcome."""
DEFAULT_MIX = "success=70,decline=10,undeliverable=10,bounce=10"
P99_LIMIT = 3.0
"""Seconds: a rate whose p99 passes this ends a ramp and is past the knee."""
KEEP_UP = 0.95
"""A rate is sustained when the achieved throughput is at least this share of the offered one."""


def parse_mix(text: str) -> dict[str, float]:
    """``success=70,decline=10`` -> the share of each kind, summing to 1."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, weight = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in KINDS:
            raise ValueError(f"{part!r}: expected kind=weight with kind one of {', '.join(KINDS)}")
        if kind in weights:
            raise ValueError(f"{kind} named twice")
        weights[kind] = float(weight)
        if weights[kind] < 0:
            raise ValueError(f"{part!r}: a weight is not negative")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"{text!r}: no order kind has a positive weight")
    return {kind: weight / total for kind, weight in weights.items() if weight > 0}


def sequence(mix: dict[str, float], count: int) -> list[str]:
    """``count`` kinds in the proportions of ``mix``, spread evenly (smooth weighted round robin)."""
    credit = dict.fromkeys(mix, 0.0)
    kinds = []
    for _ in range(count):
        for kind, share in mix.items():
            credit[kind] += share
        chosen = max(credit, key=lambda k: credit[k])
        credit[chosen] -= 1
        kinds.append(chosen)
    return kinds


def by_service(values: dict[str, float]) -> dict[str, float]:
    """Figures of processes (``orchestrator``, ``orchestrator#1``, ``emulator``) summed by what
    they run: each service's processes together, any other name as it is."""
    sums: dict[str, float] = {}
    for name, value in values.items():
        sums[module_of(name)] = sums.get(module_of(name), 0.0) + value
    return sums


@dataclass(frozen=True)
class Latency:
    """Seconds; ``count`` samples (all zero when there were none)."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float


def latency(samples: Sequence[float]) -> Latency:
    """Percentiles by linear interpolation between the closest ranks (``statistics.quantiles``, inclusive)."""
    if not samples:
        return Latency(0, 0.0, 0.0, 0.0, 0.0)
    if len(samples) == 1:
        return Latency(1, samples[0], samples[0], samples[0], samples[0])
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return Latency(len(samples), cuts[49], cuts[94], cuts[98], max(samples))


@dataclass(frozen=True)
class RatePoint:
    """One rate of a ramp: offered and achieved orders per minute, p99 in seconds, orders never finished."""

    offered: float
    achieved: float
    p99: float
    unfinished: int = 0

    @property
    def sustained(self) -> bool:
        return self.unfinished == 0 and self.p99 <= P99_LIMIT and self.achieved >= KEEP_UP * self.offered


def knee(points: Sequence[RatePoint]) -> float | None:
    """The highest offered rate sustained, with every lower rate sustained too; None if the first was not."""
    best = None
    for point in sorted(points, key=lambda p: p.offered):
        if not point.sustained:
            break
        best = point.offered
    return best
