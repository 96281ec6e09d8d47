"""sagactl for people and for scripts: ``-o json`` prints what the API answered, and in a pipe
or a narrow terminal a table becomes tab-separated lines, no column squeezed away."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.e2e.conftest import OPERATOR_TOKEN, sagactl


def _piped(stack, *args: str, columns: int = 80) -> str:
    """``COLUMNS=80 sagactl ... | cat``: stdout a pipe, the terminal narrow."""
    env = os.environ | {"SAGA_API_URL": stack.url("orchestrator"), "SAGA_OPERATOR_TOKEN": OPERATOR_TOKEN}
    env["COLUMNS"] = str(columns)
    command = f"{sys.executable} -m orchestrator.cli {' '.join(args)} | cat"
    result = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_as_json_is_the_api_s_sagas(stack, shop):
    sku = shop.new_sku(available=5)
    placed = shop.place(shop.order_body(sku, 1))
    shop.settled(placed)
    sagas = json.loads(sagactl(stack, "list", "-o", "json", "--limit", "500"))
    mine = next(s for s in sagas if s["saga_id"] == placed["saga_id"])
    assert mine["status"] == "completed" and mine["definition"] == "order"
    assert set(mine) >= {"saga_id", "definition", "subject", "status", "failed_step", "updated_at", "steps"}
    shown = json.loads(sagactl(stack, "show", placed["saga_id"], "--output", "json"))
    assert shown["saga_id"] == placed["saga_id"] and [h["event"] for h in shown["history"]][-1] == "saga_completed"


def test_in_a_pipe_at_80_columns_every_saga_shows_its_definition_and_status(stack, shop):
    sku = shop.new_sku(available=5)
    placed = shop.place(shop.order_body(sku, 1))
    shop.settled(placed)
    lines = _piped(stack, "list", "--limit", "20").splitlines()
    assert lines[0].split("\t") == ["saga", "definition", "subject", "status", "failed step", "reason", "updated"]
    rows = [line.split("\t") for line in lines[1:]]
    assert rows and all(len(row) == 7 and row[1].startswith(("order v", "order_cancellation v")) and row[3] for row in rows)
    mine = next(row for row in rows if row[0] == placed["saga_id"])
    assert mine[1] == "order v1" and mine[3] == "completed" and mine[2] == placed["order_id"]
    versions = _piped(stack, "versions").splitlines()
    assert versions[0].startswith("definition\tversion\trunning")
