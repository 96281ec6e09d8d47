"""A few seconds of ``make bench`` on the test PostgreSQL and a moto server of its own.

The benchmark is not a test: nothing here judges a timing. This checks that its code runs end
to end: every order placed reaches a final status, the counters it reads moved, and the JSON
and the plot are written.
"""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from stack.bench.__main__ import execute
from stack.bench.run import Config
from stack.bench.stats import DEFAULT_MIX, parse_mix

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_a_short_run_measures_every_order_and_writes_its_results(tmp_path, postgres_server):
    config = Config(
        rates=(120.0,),
        duration=5,
        warmup=1,
        mix=parse_mix(DEFAULT_MIX),
        idle=1,
        drain=40,
        capacity_seconds=0.5,
        stats_flush=1,  # commits reported late are missed, but not all of them: only positivity is checked
        database_url=postgres_server,
        endpoint=None,  # the benchmark's default: a moto server of its own
    )
    result = execute(config, tmp_path / "results", Console(width=160))

    assert json.loads((tmp_path / "results" / "result.json").read_text())["runs"]
    assert (tmp_path / "results" / "rate-120.png").stat().st_size > 0
    [run] = result["runs"]
    assert run["orders_measured"] == 10
    assert run["post_errors"] == 0 and run["orders_unfinished"] == 0
    assert run["statuses"].keys() == {"completed", "compensated"}
    assert 0 < run["latency_seconds"]["p50"] <= run["latency_seconds"]["p99"] <= run["latency_seconds"]["max"]
    assert run["aws_requests_per_order"] > 0 and run["aws_requests_per_order_by_operation"]["sqs.SendMessageBatch"] > 0
    assert run["commits_per_order"] > 0
    assert run["six_services_cpu_seconds_per_order"] > 0
    assert result["capacity"]["postgres_commits_per_second"] > 0
    assert result["capacity"]["sqs_send_message_batch_per_second"] > 0
    assert run["idle"]["six_services_cpu_percent"] > 0
    assert len(run["series"]["samples"]) >= 5
