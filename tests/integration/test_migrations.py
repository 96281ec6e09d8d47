"""Every database's migrations build exactly the schema its tables declare: the messaging
library's chain the messaging tables, each service's chain the rest."""

from __future__ import annotations

import asyncio
import importlib
import uuid

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from messaging import migrations
from messaging import tables as messaging_tables
from stack import infra
from stack.services import SERVICES

pytestmark = pytest.mark.integration

LIBRARY_TABLES = set(messaging_tables.metadata.tables)
MESSAGE_ID = "5f0c2a4e-9b1d-4c3e-8a7f-1d2e3f4a5b6c"


@pytest.fixture
def fresh(postgres_server):
    """The URL of a new empty database, dropped after the test."""
    prefix = f"mig{uuid.uuid4().hex[:8]}"
    yield infra.database_urls(postgres_server, prefix, ["db"])["db"]
    infra.drop_databases(postgres_server, prefix, ["db"])


def _differences(sync, metadata: MetaData, only=None) -> list:
    """What autogenerate would write to bring the database to ``metadata`` (the version tables
    aside; with ``only``, the tables it accepts alone)."""

    def include(obj, name, type_, reflected, compare_to):
        if type_ != "table":
            return True
        return name not in {"alembic_version", migrations.VERSION_TABLE} and (only is None or only(name))

    context = MigrationContext.configure(sync, opts={"compare_type": True, "include_object": include})
    return compare_metadata(context, metadata)


def _service_metadata(service) -> MetaData:
    return importlib.import_module(f"{service.module}.tables").metadata


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.module)
async def test_upgrade_to_head_matches_the_tables_and_can_run_twice(fresh, service):
    engine = create_async_engine(fresh)
    try:
        for _ in range(2):  # a restart finds the database at both heads and changes nothing
            async with engine.begin() as connection:
                await connection.run_sync(migrations.upgrade, service.module)
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences, _service_metadata(service))
    finally:
        await engine.dispose()
    assert differences == [], "tables.py changed without a migration: python -m messaging.migrations <svc|messaging> revision"


async def test_the_librarys_chain_alone_builds_the_messaging_tables(fresh):
    """A change to ``messaging/tables.py`` is one revision, of the library's chain: it alone
    builds those tables, on a database no service has touched."""
    engine = create_async_engine(fresh)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(migrations.config("messaging", sync), "head"))
        async with engine.connect() as connection:
            built = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
            differences = await connection.run_sync(_differences, messaging_tables.metadata)
    finally:
        await engine.dispose()
    assert built == LIBRARY_TABLES | {migrations.VERSION_TABLE}
    assert differences == [], "messaging/tables.py changed: python -m messaging.migrations messaging revision -m ..."


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.module)
async def test_a_services_chain_builds_its_own_tables_and_none_of_the_librarys(fresh, service):
    engine = create_async_engine(fresh)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda sync: command.upgrade(migrations.config(service.module, sync), "head"))
        async with engine.connect() as connection:
            built = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
            differences = await connection.run_sync(
                _differences, _service_metadata(service), lambda name: name not in LIBRARY_TABLES
            )
    finally:
        await engine.dispose()
    assert built & LIBRARY_TABLES == set(), "a service's revision creates messaging tables: they are the library's"
    assert differences == []


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.module)
async def test_a_database_made_by_the_old_layout_upgrades_keeping_its_messages(fresh, service):
    """Before the library had a chain, each service's first revision also created the messaging
    tables with the DDL that is now the library's first revision. Such a database, at that
    first service revision with messages in its tables and no library version table, is
    rebuilt here from the same DDL and upgraded as a service start would."""
    engine = create_async_engine(fresh)
    try:
        async with engine.begin() as connection:

            def old_layout(sync) -> None:
                library, own = migrations.config("messaging", sync), migrations.config(service.module, sync)
                command.upgrade(library, ScriptDirectory.from_config(library).get_bases()[0])
                command.upgrade(own, ScriptDirectory.from_config(own).get_bases()[0])
                sync.exec_driver_sql(f"DROP TABLE {migrations.VERSION_TABLE}")

            await connection.run_sync(old_layout)
            await connection.exec_driver_sql(
                "INSERT INTO outbox (message_id, destination, message_type, body, attributes)"
                f" VALUES ('{MESSAGE_ID}', 'queue:kept', 'Kept', '{{}}', '{{}}')"
            )
            await connection.exec_driver_sql(
                f"INSERT INTO inbox (consumer, message_id, message_type) VALUES ('kept', '{MESSAGE_ID}', 'Kept')"
            )
        async with engine.begin() as connection:
            await connection.run_sync(migrations.upgrade, service.module)
        async with engine.connect() as connection:
            kept = (await connection.exec_driver_sql("SELECT count(*) FROM outbox JOIN inbox USING (message_id)")).scalar()
            library_at = (await connection.exec_driver_sql(f"SELECT version_num FROM {migrations.VERSION_TABLE}")).scalar()
            differences = await connection.run_sync(_differences, _service_metadata(service))
    finally:
        await engine.dispose()
    library_head = ScriptDirectory.from_config(migrations.config("messaging")).get_current_head()
    assert kept == 1 and library_at == library_head and differences == []


async def test_a_database_made_before_migrations_is_adopted_not_recreated(fresh):
    from inventory_svc.tables import metadata

    engine = create_async_engine(fresh)
    try:
        async with engine.begin() as connection:
            # What create_all built then: every table but those added since (audit_log).
            before = [t for t in metadata.sorted_tables if t.name != "audit_log"]
            await connection.run_sync(lambda sync: metadata.create_all(sync, tables=before))
            await connection.exec_driver_sql("INSERT INTO stock (sku, available) VALUES ('SKU-KEPT', 3)")
        async with engine.begin() as connection:
            await connection.run_sync(migrations.upgrade, "inventory_svc")
        async with engine.connect() as connection:
            kept = (await connection.exec_driver_sql("SELECT available FROM stock WHERE sku = 'SKU-KEPT'")).scalar()
            versions = (
                await connection.exec_driver_sql(
                    f"SELECT (SELECT count(*) FROM alembic_version) + (SELECT count(*) FROM {migrations.VERSION_TABLE})"
                )
            ).scalar()
    finally:
        await engine.dispose()
    assert kept == 3 and versions == 2


async def test_replicas_starting_together_on_a_new_database_both_start(fresh):
    """Both chains run under the one advisory lock: the second replica waits for the first's
    commit, then finds the database at both heads."""
    engines = [create_async_engine(fresh) for _ in range(2)]

    async def start(engine) -> None:
        async with engine.begin() as connection:
            await connection.run_sync(migrations.upgrade, "orchestrator")

    try:
        await asyncio.gather(*(start(engine) for engine in engines))
        async with engines[0].connect() as connection:
            differences = await connection.run_sync(_differences, importlib.import_module("orchestrator.tables").metadata)
    finally:
        for engine in engines:
            await engine.dispose()
    assert differences == []


async def test_a_saga_reported_compensated_with_an_unacknowledged_compensation_is_compensating_after_the_upgrade(fresh):
    engine = create_async_engine(fresh)
    steps = '[{"name": "create_order", "status": "compensated"}, {"name": "process_payment", "status": "compensating"}]'
    done = '[{"name": "create_order", "status": "compensated"}, {"name": "process_payment", "status": "compensated"}]'
    try:
        async with engine.begin() as connection:

            def before(sync) -> None:
                library, own = migrations.config("messaging", sync), migrations.config("orchestrator", sync)
                command.upgrade(library, "head")
                command.upgrade(own, "c0e2a4b6d8f1")  # the release before

            await connection.run_sync(before)
            for saga_id, body in (
                ("00000000-0000-4000-8000-000000000001", steps),
                ("00000000-0000-4000-8000-000000000002", done),
            ):
                await connection.exec_driver_sql(
                    "INSERT INTO sagas (saga_id, definition, subject, status, data, steps, created_at, updated_at) "
                    f"VALUES ('{saga_id}', 'order', 'o', 'compensated', '{{}}', '{body}', now(), now())"
                )
        async with engine.begin() as connection:
            await connection.run_sync(migrations.upgrade, "orchestrator")
        async with engine.connect() as connection:
            statuses = dict((await connection.exec_driver_sql("SELECT saga_id::text, status FROM sagas")).all())
            noted = (await connection.exec_driver_sql("SELECT saga_id::text, detail FROM saga_history")).all()
    finally:
        await engine.dispose()
    assert statuses == {
        "00000000-0000-4000-8000-000000000001": "compensating",  # its refund was never acknowledged
        "00000000-0000-4000-8000-000000000002": "compensated",
    }
    assert [(saga, "status corrected" in detail) for saga, detail in noted] == [("00000000-0000-4000-8000-000000000001", True)]
