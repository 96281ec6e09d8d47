"""Shared fixtures: where PostgreSQL is, and how long to wait for eventual outcomes."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

# Read once, before any fixture changes the environment: an endpoint the user chose.
USER_AWS_ENDPOINT = os.environ.get("AWS_ENDPOINT_URL")

TESTS = Path(__file__).parent
SLOW = (
    "chaos/",
    "infra/",
    "browser/",
    "bench/",
    "e2e/test_fuzz.py",
    "integration/test_infra.py",
    "e2e/test_tracing.py",
    "e2e/test_bulk.py",
    "e2e/test_rolling_versions.py",
    "e2e/test_pause.py",
    "e2e/test_replay.py",
    "e2e/test_console_operations.py",
    "e2e/test_admission_burst.py",
    "e2e/test_retention.py",
)
"""The slowest families, run by ``make test-all`` (and CI) but not by ``make test``: the short
chaos run (two processes of every service under faults, 60 orders, about a minute; `make chaos`
is the long one), Terraform,
checkov and the image, the browser, the benchmark's smoke run, fuzzing, Terraform applied to moto,
and two scenarios on stacks of their own that wait for real time: one trace per saga across the
six services (tests/integration/test_tracing.py covers the context through the outbox and SQS in
``make test``), a bulk retry of an incident's 20 sagas, and a rolling deploy of two orchestrator
releases under load (tests/integration/test_saga_versions.py covers the versions in ``make test``),
and the scenarios of pausing, replaying and the console's actions over time, which wait out real
time on the shared stack (the engine's pause, resume and replay have unit tests in ``make test``)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(TESTS).as_posix().startswith(SLOW):
            item.add_marker(pytest.mark.slow)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> str:
    """A PostgreSQL server URL: ``DATABASE_URL``, else the one on 127.0.0.1:5432, else embedded.

    Under ``pytest -n`` (``make test``) the first worker takes the server on 5432 and every
    other worker an embedded server of its own: each stack a session starts is sized for a
    server of 100 connections shared by one session (tests/e2e/conftest.py), so two sessions
    on one such server could run it out of connections."""
    if url := os.environ.get("DATABASE_URL"):
        return url
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") == "gw0" and _port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    from stack.infra import start_embedded_postgres

    return start_embedded_postgres(tmp_path_factory.mktemp("pg") / "data", keep_running=False)


def eventually(check: Callable[[], T], *, timeout: float = 20, interval: float = 0.1, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s; last value: {last!r}")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stack")
