"""AWS adapters: SQS and SNS through aioboto3.

Endpoint and region follow boto3's own conventions (``AWS_ENDPOINT_URL``,
``AWS_ENDPOINT_URL_SQS``, ``AWS_REGION``/``AWS_DEFAULT_REGION``), so the same code runs
against moto, LocalStack or AWS.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aioboto3
from botocore.config import Config
from prometheus_client import Counter

from .naming import Naming

# Standard retry mode retries throttling and 5xx with exponential backoff and jitter.
BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


AWS_REQUESTS = Counter(
    "aws_requests_total",
    "HTTP requests sent to AWS APIs, each retry included, by AWS service (sqs, sns, ...) and operation",
    ["service", "operation"],
)
"""Defined here, beside the hook that counts, so that this module needs nothing of the
library but naming (:mod:`metrics` re-exports it with the others)."""


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def count_request(event_name: str, **_: Any) -> None:
    """botocore's ``before-send.<service>.<Operation>`` hook: one HTTP request to AWS (``aws_requests_total``)."""
    service, operation = event_name.split(".", 2)[1:]
    AWS_REQUESTS.labels(service, operation).inc()


def session() -> aioboto3.Session:
    """An aioboto3 session in the configured region whose clients count their requests."""
    new = aioboto3.Session(region_name=region())
    new.events.register("before-send", count_request)
    return new


@dataclass
class Broker:
    """Open SQS/SNS clients plus name resolution (logical name -> URL / ARN)."""

    sqs: Any
    sns: Any
    naming: Naming
    account_id: str
    _queue_urls: dict[str, str] = field(default_factory=dict)

    async def queue_url(self, logical: str) -> str:
        if logical not in self._queue_urls:
            response = await self.sqs.get_queue_url(QueueName=self.naming.physical(logical))
            self._queue_urls[logical] = response["QueueUrl"]
        return self._queue_urls[logical]

    def topic_arn(self, logical: str) -> str:
        return f"arn:aws:sns:{region()}:{self.account_id}:{self.naming.physical(logical)}"

    def queue_arn(self, logical: str) -> str:
        return f"arn:aws:sqs:{region()}:{self.account_id}:{self.naming.physical(logical)}"


@contextlib.asynccontextmanager
async def open_broker(naming: Naming) -> AsyncIterator[Broker]:
    aws = session()
    async with (
        aws.client("sqs", config=BOTO_CONFIG) as sqs,
        aws.client("sns", config=BOTO_CONFIG) as sns,
        aws.client("sts", config=BOTO_CONFIG) as sts,
    ):
        identity = await sts.get_caller_identity()
        yield Broker(sqs=sqs, sns=sns, naming=naming, account_id=identity["Account"])


def sqs_attributes(attributes: dict[str, str]) -> dict[str, dict[str, str]]:
    """Routing attributes in the shape SQS and SNS expect."""
    return {key: {"DataType": "String", "StringValue": value} for key, value in attributes.items()}
