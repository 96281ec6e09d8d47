"""Creating a service's own database on its server when it is missing."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy.exc
import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection

log = structlog.get_logger("database")

MAINTENANCE_DATABASE = "postgres"
"""Present on every PostgreSQL server (RDS included); where CREATE DATABASE is issued from."""
INVALID_CATALOG_NAME = "3D000"
DUPLICATE_DATABASE = "42P04"
UNIQUE_VIOLATION = "23505"
"""What the loser of two concurrent CREATE DATABASE gets (on pg_database's name index),
rather than duplicate_database, which only a CREATE after the other committed gets."""


@dataclass(frozen=True)
class Timeouts:
    """Every wait on the database has an end; seconds (see ``ServiceSettings``' ``DB_*`` settings)."""

    statement: float = 30
    lock: float = 5
    idle_in_transaction: float = 60
    command: float = 60
    keepalive: int = 30
    pool: float = 10

    def server_settings(self) -> dict[str, str]:
        """The session settings each connection opens with (PostgreSQL takes milliseconds)."""
        return {
            "statement_timeout": str(int(self.statement * 1000)),
            "lock_timeout": str(int(self.lock * 1000)),
            "idle_in_transaction_session_timeout": str(int(self.idle_in_transaction * 1000)),
            "tcp_keepalives_idle": str(self.keepalive),
            "tcp_keepalives_interval": "10",
            "tcp_keepalives_count": "3",
        }


UNLIMITED = ("statement_timeout", "lock_timeout")
"""Lifted for migrations, which may wait for another replica's migration lock and build indexes."""

PING_AFTER_IDLE = 5.0
"""Seconds a pooled connection may rest before it is checked with a ping on its way out."""


def signed_in_with_iam(created: AsyncEngine) -> AsyncEngine:
    """Every new connection of ``created`` authenticates with a fresh RDS IAM token instead of a
    password (``DATABASE_IAM_AUTH``): signed locally with the task role's credentials, valid 15
    minutes, needed only to open a connection. No database password exists anywhere."""
    import botocore.session

    url = created.url
    client = botocore.session.get_session().create_client("rds", region_name=os.environ.get("AWS_REGION"))

    @event.listens_for(created.sync_engine, "do_connect")
    def token(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["password"] = client.generate_db_auth_token(  # type: ignore[attr-defined]  # botocore adds it to the rds client at run time
            DBHostname=url.host, Port=url.port or 5432, DBUsername=url.username, Region=client.meta.region_name
        )

    return created


def engine(
    database_url: str, *, pool_size: int, max_overflow: int = 10, iam: bool = False, timeouts: Timeouts | None = None
) -> AsyncEngine:
    """A service's engine: a pool that pings only the connections that have been resting.

    SQLAlchemy's ``pool_pre_ping`` checks every checkout; on asyncpg that is BEGIN, an empty
    query and ROLLBACK, three round trips before each transaction, a quarter of a busy
    service's statements. Here a connection is pinged only if it rested ``PING_AFTER_IDLE``
    seconds or more: one that was used a moment ago is not worth the round trips, and if
    the server went away since, its first statement fails, SQLAlchemy sees a disconnect and
    drops the whole pool, and the message is received again (an HTTP request gets 503).
    The pool is last in, first out, so under light load a few connections stay warm and
    the rest rest. ``hide_parameters``: a failing statement's error (which is logged) must
    not carry the values bound into it, such as an email address. ``timeouts`` bound every
    wait: statements, locks, idle transactions, the driver, the pool and dead TCP peers.
    """
    timeouts = timeouts or Timeouts()
    created = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_use_lifo=True,
        hide_parameters=True,
        pool_timeout=timeouts.pool,
        connect_args={"server_settings": timeouts.server_settings(), "command_timeout": timeouts.command},
    )
    if iam:
        signed_in_with_iam(created)
    dialect = created.dialect

    @event.listens_for(created.sync_engine.pool, "checkin")
    def rested_since(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(created.sync_engine.pool, "checkout")
    def ping_if_rested(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
        since = record.info.get("checked_in_at")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool discards it and checks out another (or connects)
            raise DisconnectionError(str(error)) from error

    return created


GAVE_UP_WAITING = ("55P03", "57014")
"""lock_not_available (DB_LOCK_TIMEOUT) and query_canceled (DB_STATEMENT_TIMEOUT): the
transaction was rolled back, nothing was written, and the work may simply be tried again."""


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` is the database's state rather than the work's fault: a connection
    that could not be had, or was lost (the server down, restarting, out of connections), or a
    wait that hit its timeout (a lock held by a stuck transaction, a statement past its time, a
    server that stopped answering). A request gets a 503; a message is retried, and such
    failures do not count towards dead-lettering it."""
    if isinstance(error, (sqlalchemy.exc.TimeoutError, OSError, ConnectionError, TimeoutError)):
        return True
    if isinstance(error, DBAPIError):
        if _sqlstate(error) in GAVE_UP_WAITING or isinstance(getattr(error.orig, "__cause__", None), TimeoutError):
            return True
        return bool(error.connection_invalidated) or any(
            marker in str(error.orig) for marker in ("too many clients", "not yet accepting connections", "starting up")
        )
    return False


def asyncpg_dsn(database_url: str | URL) -> str:
    """The plain asyncpg DSN of a SQLAlchemy URL (for tools that talk to PostgreSQL directly)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


async def create_if_missing(database_url: str, *, iam: bool = False) -> bool:
    """Create the database ``database_url`` names, with the same credentials, if the server
    does not have it (a fresh RDS instance holding one database per service). True if created.

    The maintenance database is only reached when the own database is missing, so a user
    allowed into its own database alone starts as before. Two replicas starting together
    may both try: the loser's error (duplicate name) means the database is there.
    """
    url = make_url(database_url)
    probe = create_async_engine(url, poolclass=NullPool)
    if iam:
        signed_in_with_iam(probe)
    try:
        async with probe.connect():
            return False
    except DBAPIError as error:
        if _sqlstate(error) != INVALID_CATALOG_NAME:
            raise
    finally:
        await probe.dispose()
    # CREATE DATABASE cannot run inside a transaction block, hence AUTOCOMMIT.
    admin = create_async_engine(url.set(database=MAINTENANCE_DATABASE), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    if iam:
        signed_in_with_iam(admin)
    if url.database is None:
        raise ValueError("the database URL names no database")
    name = admin.dialect.identifier_preparer.quote(url.database)
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"CREATE DATABASE {name}"))
    except DBAPIError as error:
        if _sqlstate(error) not in (DUPLICATE_DATABASE, UNIQUE_VIOLATION):
            raise
        return False
    finally:
        await admin.dispose()
    log.info("database_created", database=url.database)
    return True
