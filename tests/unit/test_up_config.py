"""``make up``'s REPLICAS, its ports, and the line it quotes from the log of a process that died."""

from __future__ import annotations

import json

import pytest

from stack import supervisor

VALIDATION_ERROR = """\
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/work/orchestrator/main.py", line 96, in main
    settings = Settings()
               ^^^^^^^^^^
pydantic_core._pydantic_core.ValidationError: 1 validation error for Settings
SAGA_OPERATOR_TOKEN
  Value error, an operator token is 16 to 512 visible ASCII characters [type=value_error]
    For further information visit https://errors.pydantic.dev/2.14/v/value_error
"""


def test_replicas_are_a_count_for_every_service_and_counts_for_some():
    assert supervisor.parse_replicas("") == dict.fromkeys(supervisor.BY_NAME, 1)
    assert set(supervisor.parse_replicas("2").values()) == {2}
    given = supervisor.parse_replicas("orchestrator=3, order_svc=2")
    assert given["orchestrator"] == 3 and given["order_svc"] == 2 and given["payment_svc"] == 1
    assert supervisor.parse_replicas("orchestrator=3,2") == dict.fromkeys(supervisor.BY_NAME, 2) | {"orchestrator": 3}
    for bad, says in (("0", "not a count"), ("orchestrator=x", "not a count"), ("billing=2", "unknown service 'billing'")):
        with pytest.raises(supervisor.CannotStart, match=says):
            supervisor.parse_replicas(bad)


def test_replica_zero_keeps_the_service_port_and_the_others_are_a_hundred_apart():
    processes = supervisor.layout(supervisor.parse_replicas("orchestrator=3"), offset=1000)
    assert {name: p["port"] for name, p in processes.items() if p["service"] == "orchestrator"} == {
        "orchestrator": 9001,
        "orchestrator-1": 9101,
        "orchestrator-2": 9201,
    }
    assert processes["order_svc"]["url"] == "http://127.0.0.1:9000"
    assert processes["orders_proxy"]["port"] == 9080 and processes["emulator"]["port"] == 6100
    ports = [p["port"] for p in supervisor.layout(dict.fromkeys(supervisor.BY_NAME, supervisor.MAX_REPLICAS)).values()]
    assert len(ports) == len(set(ports))


def test_the_reason_is_the_exception_of_the_last_traceback_with_the_setting_it_names():
    log = "some earlier output\n" + VALIDATION_ERROR.replace("16 to 512", "earlier") + VALIDATION_ERROR
    assert supervisor.last_error(log) == (
        "ValidationError: 1 validation error for Settings; "
        "SAGA_OPERATOR_TOKEN: Value error, an operator token is 16 to 512 visible ASCII characters [type=value_error]"
    )


def test_the_reason_in_json_records_is_the_traceback_they_carry_or_the_last_message():
    failed_start = [
        {"event": 'Traceback (most recent call last):\n  File "x.py", line 1\nConnectionRefusedError: [Errno 111] refused\n'},
        {"event": "Application startup failed. Exiting.", "level": "error"},
    ]
    assert supervisor.last_error("\n".join(map(json.dumps, failed_start))) == "ConnectionRefusedError: [Errno 111] refused"
    caddy = {"level": "error", "msg": "loading config", "error": "listen tcp 127.0.0.1:8080: bind: address already in use"}
    assert supervisor.last_error(json.dumps(caddy)) == "loading config: listen tcp 127.0.0.1:8080: bind: address already in use"
    assert supervisor.last_error("") == "its log is empty"
