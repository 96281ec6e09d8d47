"""Real PostgreSQL (a fresh database per session) and a moto server speaking the AWS wire protocol."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from contracts.topology import Naming
from messaging import migrations
from messaging.aws import open_broker
from messaging.tables import add_messaging_tables
from stack import infra, terraform
from tests.conftest import USER_AWS_ENDPOINT

metadata = MetaData()
add_messaging_tables(metadata)
effects = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", UUID(as_uuid=True), nullable=False),
    Column("note", String(100)),
)


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """AWS_ENDPOINT_URL if set, else a moto server on a free port of 127.0.0.1."""
    saved = dict(os.environ)
    process = None
    endpoint = USER_AWS_ENDPOINT
    if not endpoint:
        port = infra.free_port()
        process = infra.start_emulator(port, tmp_path_factory.mktemp("moto") / "moto.log")
        endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(infra.emulator_environment(endpoint))
    yield endpoint
    if process:
        process.terminate()
        process.wait(10)
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def naming(emulator, tmp_path_factory) -> Naming:
    """A fresh prefix with its topology: made by Terraform on a given endpoint, directly on our own moto server."""
    naming = Naming(f"it{uuid.uuid4().hex[:8]}")
    if USER_AWS_ENDPOINT:
        applied = terraform.adopt_or_apply(naming, emulator, tmp_path_factory.mktemp("terraform"))
    else:
        infra.provision(naming, endpoint=emulator)
        applied = False
    yield naming
    if applied:
        infra.remove(naming, endpoint=emulator)


@pytest.fixture(scope="session")
def database_url(postgres_server):
    prefix = f"it{uuid.uuid4().hex[:8]}"
    url = infra.database_urls(postgres_server, prefix, ["messaging"])["messaging"]
    yield url
    infra.drop_databases(postgres_server, prefix, ["messaging"])


@pytest.fixture(scope="session")
async def engine(database_url):
    engine = create_async_engine(database_url, pool_size=10)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine):
    return async_sessionmaker(engine, expire_on_commit=False)


@pytest.fixture(scope="session")
async def broker(naming):
    async with open_broker(naming) as broker:
        yield broker


@pytest.fixture
async def queue(broker, naming):
    """A fresh queue with its own dead-letter queue (maxReceiveCount 3), per test."""
    import json

    name = f"q{uuid.uuid4().hex[:8]}"
    dlq = await broker.sqs.create_queue(QueueName=naming.physical(f"{name}-dlq"))
    attributes = await broker.sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])
    await broker.sqs.create_queue(
        QueueName=naming.physical(name),
        Attributes={
            "VisibilityTimeout": "30",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": attributes["Attributes"]["QueueArn"], "maxReceiveCount": 3}),
        },
    )
    return name


@pytest.fixture(scope="module")
def orchestrator_url(postgres_server):
    """A fresh orchestrator database for each test module."""
    prefix = f"it{uuid.uuid4().hex[:8]}"
    yield infra.database_urls(postgres_server, prefix, ["orchestrator"])["orchestrator"]
    infra.drop_databases(postgres_server, prefix, ["orchestrator"])


@pytest.fixture(scope="module")
async def orchestrator_db(orchestrator_url):
    """Sessions on it, migrated to head."""
    engine = create_async_engine(orchestrator_url, pool_size=10)
    async with engine.begin() as connection:
        await connection.run_sync(migrations.upgrade, "orchestrator")
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()
