"""Stock rules, with no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class ReservationRefused(Exception):
    """A business refusal: unknown SKU or not enough stock. Never retried."""


@dataclass(frozen=True)
class Level:
    available: int
    reserved: int


def reserve(levels: Mapping[str, Level], wanted: Mapping[str, int]) -> dict[str, Level]:
    """All or nothing: the new level of every wanted SKU, or a refusal naming each shortfall."""
    problems = []
    for sku, quantity in sorted(wanted.items()):
        level = levels.get(sku)
        if level is None:
            problems.append(f"{sku}: unknown sku")
        elif level.available < quantity:
            problems.append(f"{sku}: {quantity} wanted, {level.available} available")
    if problems:
        raise ReservationRefused("; ".join(problems))
    return {sku: Level(levels[sku].available - q, levels[sku].reserved + q) for sku, q in wanted.items()}


def release(levels: Mapping[str, Level], held: Mapping[str, int]) -> dict[str, Level]:
    """Put reserved quantities back."""
    return {sku: Level(levels[sku].available + q, levels[sku].reserved - q) for sku, q in held.items()}
