"""One login per service: each owns its own database and can open no other, and a database
the master login built in an earlier release is handed over whole."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from messaging import bootstrap
from messaging.database import asyncpg_dsn
from stack import infra

pytestmark = pytest.mark.integration


@pytest.fixture
def logins(postgres_server):
    prefix = f"lg{uuid.uuid4().hex[:8]}"
    urls = infra.database_urls(postgres_server, prefix, ["order", "payment"])
    yield urls
    infra.drop_databases(postgres_server, prefix, ["order", "payment"])


def test_order_svc_s_login_can_neither_read_nor_write_the_payment_database(logins):
    order, payment = make_url(logins["order"]), make_url(logins["payment"])
    assert order.username != make_url(payment).username and order.username != "postgres"

    async def check() -> None:
        own = await asyncpg.connect(asyncpg_dsn(order))
        await own.execute("CREATE TABLE orders_here (id int)")  # its own database: it owns it
        await own.close()
        theirs = await asyncpg.connect(asyncpg_dsn(payment))
        await theirs.execute("CREATE TABLE payments (card text)")
        await theirs.close()
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
            await asyncpg.connect(asyncpg_dsn(order.set(database=payment.database)))
        own = await asyncpg.connect(asyncpg_dsn(order))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await own.execute(f'SET ROLE "{payment.username}"')  # nor become its login
            assert not await own.fetchval(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user"
            )
        finally:
            await own.close()

    asyncio.run(check())


def test_a_database_the_master_built_is_handed_to_the_service_s_login(postgres_server):
    prefix = f"lg{uuid.uuid4().hex[:8]}"
    database = f"{prefix}_order"
    master = asyncpg_dsn(make_url(postgres_server))

    async def before() -> None:
        admin = await asyncpg.connect(master, database="postgres")
        await admin.execute(f'CREATE DATABASE "{database}"')  # as the previous release did, as master
        await admin.close()
        old = await asyncpg.connect(master, database=database)
        await old.execute("CREATE TABLE outbox (id bigserial primary key, body text)")
        await old.execute("CREATE FUNCTION stamp() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        await old.close()

    async def after(url: str) -> None:
        own = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await own.execute("ALTER TABLE outbox ADD COLUMN attempts int")  # a migration: owner only
            await own.execute("INSERT INTO outbox (body) VALUES ('x')")  # its sequence came with it
            await own.execute("DROP FUNCTION stamp()")
        finally:
            await own.close()

    try:
        asyncio.run(before())
        asyncio.run(after(infra.database_urls(postgres_server, prefix, ["order"])["order"]))
    finally:
        infra.drop_databases(postgres_server, prefix, ["order"])


def test_bootstrap_refuses_a_name_that_is_not_an_identifier():
    with pytest.raises(ValueError, match="not a role or database name"):
        asyncio.run(bootstrap.provision("postgresql://127.0.0.1/x", {'x"; DROP ROLE postgres; --': "x"}, passwords={}, iam=False))


def test_the_bootstrap_token_is_drawn_once_into_its_empty_secret(emulator):
    """Terraform creates the secret empty (no token in any plan or state); the bootstrap task
    fills it once and never replaces it."""
    secrets = infra.client("secretsmanager", emulator)
    arn = secrets.create_secret(Name=f"test-bootstrap-token-{uuid.uuid4().hex[:8]}")["ARN"]
    try:
        assert bootstrap.bootstrap_token(arn) is True
        token = secrets.get_secret_value(SecretId=arn)["SecretString"]
        assert len(token) >= 40
        assert bootstrap.bootstrap_token(arn) is False
        assert secrets.get_secret_value(SecretId=arn)["SecretString"] == token
    finally:
        secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
