"""The chaos run's measurements: what a protection switched off costs, computed after the run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from stack.chaos import (
    action_steps,
    fault_targets,
    instance_logs,
    percentiles,
    read_logs,
    relay_latencies,
    resend_outcomes,
    retries_hidden_until,
    step_latencies,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_percentiles_by_nearest_rank():
    assert percentiles([]) == {}
    assert percentiles([3.0, 1.0, 2.0]) == {"n": 3, "p50": 2.0, "p99": 3.0, "max": 3.0}
    spread = percentiles([float(i) for i in range(200)])
    assert (spread["p50"], spread["p99"], spread["max"]) == (100.0, 198.0, 199.0)


def test_a_step_lasts_from_its_first_command_to_its_reply_resends_included():
    history = [
        ("s1", at(0), "saga_started", None),
        ("s1", at(0), "step_succeeded", "create_order"),  # local: no command, no latency
        ("s1", at(0), "step_started", "reserve_inventory"),
        ("s1", at(3), "step_resent", "reserve_inventory"),
        ("s1", at(4.5), "step_succeeded", "reserve_inventory"),
        ("s1", at(4.5), "step_started", "process_payment"),
        ("s1", at(5), "step_failed", "process_payment"),
        ("s2", at(1), "step_started", "reserve_inventory"),
        ("s2", at(31), "step_timed_out", "reserve_inventory"),  # never answered: left out
    ]
    assert step_latencies(history) == [4.5, 0.5]


STEPS = {"ReserveInventory": "reserve_inventory", "ProcessPayment": "process_payment"}


def test_a_lost_command_s_step_is_answered_by_a_resend_or_times_out():
    history = [
        ("s1", at(0), "step_started", "reserve_inventory"),
        ("s1", at(3), "step_resent", "reserve_inventory"),
        ("s1", at(4), "step_succeeded", "reserve_inventory"),
        ("s2", at(0), "step_started", "process_payment"),
        ("s2", at(30), "step_timed_out", "process_payment"),
        ("s3", at(0), "step_started", "process_payment"),
        ("s3", at(3), "step_resent", "process_payment"),
        ("s3", at(8), "step_resent", "process_payment"),
        ("s3", at(9), "step_succeeded", "process_payment"),
    ]
    lost = [
        {"message_id": "m1", "saga_id": "s1", "message_type": "ReserveInventory"},
        {"message_id": "m2", "saga_id": "s2", "message_type": "ProcessPayment"},
        {"message_id": "m3", "saga_id": "s3", "message_type": "ProcessPayment"},  # a copy of it got through
        {"message_id": "m4", "saga_id": "s4", "message_type": "ReleaseInventory"},  # a compensation
    ]
    assert resend_outcomes(history, lost, handled={"m3"}, step_of=STEPS) == {
        "steps_resent": 2,
        "resends": 3,
        "commands_dropped": 4,
        "commands_lost": 3,
        "steps_lost": 2,
        "answered_by_resend": 1,
        "timed_out": 1,
    }


def test_the_order_saga_s_commands_name_their_steps():
    steps = action_steps()
    assert steps["ReserveInventory"] == "reserve_inventory"
    assert steps["SendConfirmation"] == "send_confirmation"
    assert "ReleaseInventory" not in steps


def test_relay_latency_is_split_around_the_postgres_restart():
    restart = (at(100).timestamp(), at(110).timestamp())
    lived = at(140).timestamp()  # the relay that went through the restart exited then
    rows = [
        (at(10), at(10.02), lived),  # before
        (at(20), at(20.04), lived),  # before
        (at(94), at(112), lived),  # held up by the restart itself: neither side
        (at(113), at(113.5), lived),  # too close after it
        (at(120), at(120.6), lived),  # after
        (at(130), at(131.0), lived),  # after
        (at(139), at(140.5), lived),  # published by its successor, which starts afresh
    ]
    split = relay_latencies(rows, restart)
    assert split["before"]["n"] == 2 and round(split["before"]["max"], 2) == 0.04
    assert split["after"]["n"] == 2 and round(split["after"]["p50"], 2) == 1.0
    assert relay_latencies(rows, None)["before"]["n"] == 7


def test_redeliveries_and_handled_ids_are_read_from_the_services_logs(tmp_path):
    lines = [
        {"event": "message_handled", "receive_count": 1, "message_id": "a"},
        {"event": "message_handled", "receive_count": 2, "message_id": "b"},
        {"event": "message_duplicate_ignored", "receive_count": 3, "message_id": "c"},
        {"event": "message_handler_failed", "receive_count": 4},
    ]
    (tmp_path / "payment_svc.log").write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json message_handled\n")
    (tmp_path / "emulator.log").write_text(json.dumps({"event": "message_handled", "receive_count": 9}) + "\n")
    assert read_logs(tmp_path) == (2, {"a", "b", "c"})


def test_a_failed_handler_hides_its_message_until_its_retry(tmp_path):
    log = tmp_path / "order_svc.log"
    assert retries_hidden_until(log) == 0.0  # no log yet
    lines = [
        {"event": "message_handler_failed", "retry_in": 4, "timestamp": "2026-11-26T12:00:00.000000Z"},
        {"event": "message_handler_failed", "retry_in": 2, "timestamp": "2026-11-26T12:00:10.000000Z"},
        {"event": "message_handled", "receive_count": 1, "timestamp": "2026-11-26T12:00:30.000000Z"},
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert retries_hidden_until(log) == at(12).timestamp()


def test_a_service_s_logs_are_those_of_every_process_it_ran(tmp_path):
    for name in ("orchestrator.log", "orchestrator#1.log", "orchestrator#3.log", "order_svc.log", "order_svc#1.log"):
        (tmp_path / name).write_text("")
    names = [p.name for p in instance_logs(tmp_path, "orchestrator")]
    assert names == ["orchestrator.log", "orchestrator#1.log", "orchestrator#3.log"]
    assert [p.name for p in instance_logs(tmp_path, "payment_svc")] == ["payment_svc.log"]  # not written yet


def test_the_report_names_what_each_fault_hit():
    timeline = [
        (1.0, "kill -9", "orchestrator#1"),
        (2.0, "postgres restart", ""),
        (3.0, "postgres back", ""),
        (4.0, "kill -9", "payment_svc"),
        (5.0, "kill -9", "orchestrator#1"),
        (6.0, "rolling deploy", ""),
        (7.0, "rolling deploy", "order_svc -> order_svc#2"),
    ]
    assert fault_targets(timeline) == {
        "kill -9": {"orchestrator#1": 2, "payment_svc": 1},
        "rolling deploy": {"order_svc -> order_svc#2": 1},
    }
