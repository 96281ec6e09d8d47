"""Schema migrations (Alembic), written once for every service.

Each service keeps its revisions in ``<service>/migrations/versions`` and a two-line
``env.py`` that hands its metadata to :func:`run_env`. A service upgrades its own database
to head when it starts, under a PostgreSQL advisory lock so that instances starting
together do not race; ``python -m messaging.migrations <service> revision -m "..."``
autogenerates a new revision against a database at head.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

_LOCK = 0x5A6A  # advisory lock key: one migrator per database at a time


def config(service_package: str, connection: Connection | None = None) -> Config:
    module = sys.modules.get(service_package) or __import__(service_package)
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(str(module.__file__)).parent / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection, service_package: str) -> None:
    """Bring the connected database to head (use with ``AsyncConnection.run_sync``)."""
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    # A migration that waits for a table lock held by running instances would make all
    # their traffic queue behind it; fail the start instead, and retry it.
    connection.execute(text("SET LOCAL lock_timeout = '10s'"))
    cfg = config(service_package, connection)
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" not in tables and "outbox" in tables:
        # Created with metadata.create_all before migrations existed: it holds the
        # initial schema, so it is recorded as such and upgraded from there.
        command.stamp(cfg, ScriptDirectory.from_config(cfg).get_bases()[0])
    command.upgrade(cfg, "head")


def run_env(metadata: MetaData) -> None:
    """The body of every service's ``migrations/env.py``."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through messaging.migrations with an open connection")
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
