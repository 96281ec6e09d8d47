"""The connection pools' sizes: read from the environment, checked at start, given to the engines.

infra/ derives DB_POOL_SIZE, DB_MAX_OVERFLOW and RELAY_POOL_SIZE per ECS task from the
database's connection limit; they only keep that budget if every process really opens its
pools with them, and a value that makes no pool at all stops the process instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import MetaData

from messaging import service
from messaging.service import ServiceDefinition, create_app
from payment_svc.settings import Settings as PaymentSettings

POOL_VARIABLES = ("DB_POOL_SIZE", "DB_MAX_OVERFLOW", "RELAY_POOL_SIZE")


@pytest.fixture
def env(monkeypatch):
    for name in POOL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PAYMENT_DATABASE_URL", "postgresql://db/payment")
    return monkeypatch


def test_defaults_are_the_pools_of_a_local_run(env):
    settings = PaymentSettings()
    assert (settings.db_pool_size, settings.db_max_overflow, settings.relay_pool_size) == (10, 10, 4)


def test_the_unprefixed_variables_set_the_pools(env):
    env.setenv("DB_POOL_SIZE", "3")
    env.setenv("DB_MAX_OVERFLOW", "0")
    env.setenv("RELAY_POOL_SIZE", "1")
    settings = PaymentSettings()
    assert (settings.db_pool_size, settings.db_max_overflow, settings.relay_pool_size) == (3, 0, 1)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_SIZE", "-1"),
        ("DB_MAX_OVERFLOW", "-1"),
        ("RELAY_POOL_SIZE", "0"),
        ("RELAY_POOL_SIZE", "-4"),
    ],
)
def test_a_size_that_makes_no_pool_is_refused_naming_the_variable(env, name, bad):
    env.setenv(name, bad)
    with pytest.raises(ValidationError) as refused:
        PaymentSettings()
    assert name in str(refused.value)


def test_a_bad_pool_size_stops_the_process_and_says_which(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k not in POOL_VARIABLES}
    environment |= {"PAYMENT_DATABASE_URL": "postgresql://nowhere.invalid/payment", "DB_POOL_SIZE": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "payment_svc"], env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "DB_POOL_SIZE" in done.stderr and "greater than or equal to 1" in done.stderr, done.stderr


class _Stop(Exception):
    """Raised by the fake engine once the lifespan has built both engines."""


class _Engine:
    def begin(self) -> Any:
        raise _Stop


async def test_the_lifespan_opens_its_pools_with_the_settings(env, monkeypatch):
    env.setenv("DB_POOL_SIZE", "3")
    env.setenv("DB_MAX_OVERFLOW", "2")
    env.setenv("RELAY_POOL_SIZE", "1")
    env.setenv("DB_LOCK_TIMEOUT", "2")
    built: list[dict[str, Any]] = []

    def engine(database_url: str, *, pool_size: int, max_overflow: int = 10, iam: bool = False, timeouts: Any = None) -> _Engine:
        built.append({"pool_size": pool_size, "max_overflow": max_overflow, "lock_timeout": timeouts.lock})
        return _Engine()

    async def create_if_missing(database_url: str, *, iam: bool = False) -> bool:
        return False

    monkeypatch.setattr(service.database, "engine", engine)
    monkeypatch.setattr(service.database, "create_if_missing", create_if_missing)
    definition = ServiceDefinition(name="payment", package="payment_svc", metadata=MetaData(), queues=(), handlers={})
    app: FastAPI = create_app(definition, PaymentSettings())
    with pytest.raises(_Stop):
        async with app.router.lifespan_context(app):
            pass
    assert built == [
        {"pool_size": 3, "max_overflow": 2, "lock_timeout": 2},
        {"pool_size": 1, "max_overflow": 0, "lock_timeout": 2},
    ]


@pytest.mark.parametrize(
    ("setting", "value", "names"),
    [("DB_COMMAND_TIMEOUT", "10", "DB_COMMAND_TIMEOUT"), ("DB_LOCK_TIMEOUT", "40", "DB_LOCK_TIMEOUT")],
)
def test_timeouts_that_do_not_nest_stop_the_process_and_say_which(env, setting, value, names):
    env.setenv(setting, value)
    with pytest.raises(ValueError, match=names):
        PaymentSettings()
