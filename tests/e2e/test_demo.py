"""``make demo`` and ``make smoke`` print a table and exit non-zero when an outcome is wrong:
the same code, run here against the session's system, keeps both honest."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from stack import demo
from tests.e2e.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.e2e


def test_the_demo_sees_every_outcome_and_both_cancellations_as_expected(stack):
    out = io.StringIO()
    urls = {module: stack.url(module) for module in stack.ports}
    ok = demo.run(urls, Console(file=out, width=200), token=OPERATOR_TOKEN)
    table = out.getvalue()
    assert ok, table
    assert "order_cancellation" in table and "cancel_scheduled_shipment" in table
    assert table.count("│ yes ") == len(demo.SCENARIOS) + 2 * len(demo.CANCELLATIONS)
