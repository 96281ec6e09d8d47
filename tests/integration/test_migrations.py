"""Every service's migrations build exactly the schema its tables declare."""

from __future__ import annotations

import importlib
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from messaging import migrations
from stack import infra
from stack.services import SERVICES

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def databases(postgres_server):
    prefix = f"mig{uuid.uuid4().hex[:8]}"
    names = [s.database for s in SERVICES]
    yield infra.database_urls(postgres_server, prefix, names)
    infra.drop_databases(postgres_server, prefix, names)


@pytest.mark.parametrize("service", [s for s in SERVICES], ids=lambda s: s.module)
async def test_upgrade_to_head_matches_the_tables_and_can_run_twice(databases, service):
    metadata = importlib.import_module(f"{service.module}.tables").metadata
    engine = create_async_engine(databases[service.database])
    try:
        for _ in range(2):  # a restart finds the database at head and changes nothing
            async with engine.begin() as connection:
                await connection.run_sync(migrations.upgrade, service.module)
        async with engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
            )
    finally:
        await engine.dispose()
    assert differences == [], "tables.py changed without a migration: python -m messaging.migrations <svc> revision -m ..."


@pytest.fixture
def legacy_url(postgres_server):
    prefix = f"mig{uuid.uuid4().hex[:8]}"
    yield infra.database_urls(postgres_server, prefix, ["legacy"])["legacy"]
    infra.drop_databases(postgres_server, prefix, ["legacy"])


async def test_a_database_made_before_migrations_is_adopted_not_recreated(legacy_url):
    from inventory_svc.tables import metadata

    engine = create_async_engine(legacy_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            await connection.exec_driver_sql("INSERT INTO stock (sku, available) VALUES ('SKU-KEPT', 3)")
        async with engine.begin() as connection:
            await connection.run_sync(migrations.upgrade, "inventory_svc")
        async with engine.connect() as connection:
            kept = (await connection.exec_driver_sql("SELECT available FROM stock WHERE sku = 'SKU-KEPT'")).scalar()
            version = (await connection.exec_driver_sql("SELECT count(*) FROM alembic_version")).scalar()
    finally:
        await engine.dispose()
    assert kept == 3 and version == 1
