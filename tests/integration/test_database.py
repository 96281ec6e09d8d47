"""A service's database is created at start when its server does not have it yet."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from messaging import database
from messaging.database import create_if_missing

pytestmark = pytest.mark.integration


@pytest.fixture
def missing_database(postgres_server):
    """The URL of a database that does not exist yet (a name that needs quoting), dropped afterwards."""
    server = make_url(postgres_server)
    name = f"New-Service_{uuid.uuid4().hex[:8]}"
    yield server.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)

    async def drop() -> None:
        connection = await asyncpg.connect(server.set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


async def database_exists(url: str) -> bool:
    connection = await asyncpg.connect(
        make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    )
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", make_url(url).database))
    finally:
        await connection.close()


async def test_a_missing_database_is_created_once_and_an_existing_one_left_alone(missing_database):
    assert not await database_exists(missing_database)
    assert await create_if_missing(missing_database) is True
    assert await database_exists(missing_database)
    assert await create_if_missing(missing_database) is False


async def test_replicas_starting_together_create_it_once_and_none_fails(missing_database):
    results = await asyncio.gather(*(create_if_missing(missing_database) for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert await database_exists(missing_database)


async def test_a_service_starts_on_a_server_without_its_database_and_migrates_it(missing_database, naming, monkeypatch):
    from inventory_svc.main import build_app
    from inventory_svc.settings import Settings

    monkeypatch.setenv("SAGA_RESOURCE_PREFIX", naming.prefix)
    monkeypatch.setenv("METRICS_SINK", "off")
    app = build_app(Settings(database_url=missing_database, port=1))
    async with app.router.lifespan_context(app):
        connection = await asyncpg.connect(
            make_url(missing_database).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            tables = {r["tablename"] for r in await connection.fetch("SELECT tablename FROM pg_tables")}
        finally:
            await connection.close()
    assert {"alembic_version", "outbox", "inbox", "stock"} <= tables


async def _backend(engine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT pg_backend_pid()")))


async def test_only_a_connection_that_rested_is_pinged_and_a_dead_one_is_replaced_unseen(database_url, monkeypatch):
    engine = database.engine(database_url, pool_size=1, max_overflow=0)
    pings = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(1) or ping(connection))
    try:
        first = await _backend(engine)
        assert await _backend(engine) == first
        assert pings == []  # used a moment ago: no round trips spent on a ping
        # The server drops it while it rests, as a restart or a failover would.
        killer = await asyncpg.connect(database.asyncpg_dsn(database_url))
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", first)
        finally:
            await killer.close()
        monkeypatch.setattr(database, "PING_AFTER_IDLE", 0.0)  # as if it had rested for a while
        second = await _backend(engine)  # no error: the ping found it dead and the pool connected anew
        assert second != first
        assert len(pings) == 1
    finally:
        await engine.dispose()


async def test_every_connection_opens_with_the_waits_bounded(database_url):
    timeouts = database.Timeouts(statement=12, lock=3, idle_in_transaction=45, command=20, keepalive=25)
    engine = database.engine(database_url, pool_size=1, max_overflow=0, timeouts=timeouts)
    try:
        async with engine.connect() as connection:
            shown = {
                name: (await connection.execute(text(f"SHOW {name}"))).scalar_one()
                for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "tcp_keepalives_idle")
            }
    finally:
        await engine.dispose()
    # A statement past its time is cancelled by the server, not left to hang.
    quick = database.engine(database_url, pool_size=1, max_overflow=0, timeouts=database.Timeouts(statement=0.2, lock=0.1))
    try:
        async with quick.connect() as connection:
            with pytest.raises(Exception, match="statement timeout"):
                await connection.execute(text("SELECT pg_sleep(3)"))
    finally:
        await quick.dispose()
    assert shown["statement_timeout"] == "12s"
    assert shown["lock_timeout"] == "3s"
    assert shown["idle_in_transaction_session_timeout"] == "45s"
    assert shown["tcp_keepalives_idle"] in ("25", "25s", "0")  # 0 on a Unix-socket connection, which has no TCP
