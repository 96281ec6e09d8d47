"""Creating a service's own database on its server when it is missing."""

from __future__ import annotations

import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

log = structlog.get_logger("database")

MAINTENANCE_DATABASE = "postgres"
"""Present on every PostgreSQL server (RDS included); where CREATE DATABASE is issued from."""
INVALID_CATALOG_NAME = "3D000"
DUPLICATE_DATABASE = "42P04"
UNIQUE_VIOLATION = "23505"
"""What the loser of two concurrent CREATE DATABASE gets (on pg_database's name index),
rather than duplicate_database, which only a CREATE after the other committed gets."""


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


async def create_if_missing(database_url: str) -> bool:
    """Create the database ``database_url`` names, with the same credentials, if the server
    does not have it (a fresh RDS instance holding one database per service). True if created.

    The maintenance database is only reached when the own database is missing, so a user
    allowed into its own database alone starts as before. Two replicas starting together
    may both try: the loser's error (duplicate name) means the database is there.
    """
    url = make_url(database_url)
    probe = create_async_engine(url, poolclass=NullPool)
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
