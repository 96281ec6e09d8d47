"""Schema migrations (Alembic), written once for every service.

A service's database is upgraded along two chains. The messaging library's own, in
``messaging/migrations/versions`` with its version table ``alembic_version_messaging``,
builds the tables of :mod:`messaging.tables` (``outbox``, ``inbox``, ``saga_step_guard``):
a change to them is one revision there, whichever services use them, as DBOS versions its
system tables apart from the application's. Each service's, in ``<service>/migrations/versions``
with ``alembic_version`` and a two-line ``env.py`` that hands its metadata to :func:`run_env`,
builds the rest.

A service upgrades its own database to both heads when it starts, the library's first, in one
transaction under a PostgreSQL advisory lock so that instances starting together do not race;
``python -m messaging.migrations <service or messaging> revision -m "..."`` autogenerates a
new revision of that chain against a database at head.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

from .. import tables

LIBRARY = "messaging"
"""The package whose ``migrations`` are the library's chain (``config(LIBRARY)``)."""
VERSION_TABLE = "alembic_version_messaging"
"""The library chain's version table; a service's chain keeps Alembic's ``alembic_version``."""
_LIBRARY_TABLES = frozenset(tables.metadata.tables) | {VERSION_TABLE}

_LOCK = 0x5A6A  # advisory lock key: one migrator per database at a time


def config(package: str, connection: Connection | None = None) -> Config:
    """The Alembic configuration of ``package``'s chain: a service's, or ``LIBRARY``."""
    module = sys.modules.get(package) or __import__(package)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(str(module.__file__)).parent / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, service_package: str) -> None:
    """Bring the connected database to the library's head, then the service's (use with
    ``AsyncConnection.run_sync``)."""
    # One lock for both chains, held to the commit: a second instance waits, then finds both at head.
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    # A migration that waits for a table lock held by running instances would make all
    # their traffic queue behind it; fail the start instead, and retry it.
    connection.execute(text("SET LOCAL lock_timeout = '10s'"))
    library, service = config(LIBRARY, connection), config(service_package, connection)
    found = set(inspect(connection).get_table_names())
    if VERSION_TABLE not in found and "outbox" in found:
        # Made when each service's first revision created the messaging tables (or by
        # metadata.create_all before there were migrations): they are exactly what the
        # library's first revision creates, so it is recorded as applied, not run again.
        command.stamp(library, _base(library))
    if "alembic_version" not in found and VERSION_TABLE not in found and "outbox" in found:
        # Created with metadata.create_all before migrations existed: it holds the
        # initial schema, so it is recorded as such and upgraded from there.
        command.stamp(service, _base(service))
    command.upgrade(library, "head")
    command.upgrade(service, "head")


def _base(cfg: Config) -> str:
    return ScriptDirectory.from_config(cfg).get_bases()[0]


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``: its own tables; the messaging
    tables in its metadata are the library chain's, left out of its revisions."""
    _run(metadata, "alembic_version", lambda name: name not in _LIBRARY_TABLES)


def run_library_env() -> None:
    """The body of the library chain's ``migrations/env.py``: the messaging tables alone,
    whatever else the database holds."""
    _run(tables.metadata, VERSION_TABLE, lambda name: name in _LIBRARY_TABLES)


def _run(metadata: MetaData, version_table: str, owns: Callable[[str | None], bool]) -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through messaging.migrations with an open connection")

    def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        return type_ != "table" or owns(name)

    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=version_table,
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
