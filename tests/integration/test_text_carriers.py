"""The carriers themselves confirm the documented rules the API's text rule is built on
(``tests/unit/test_text_rules.py``): PostgreSQL here, SQS on LocalStack (moto does not
check the characters of a message body)."""

from __future__ import annotations

import json
import os
import uuid

import botocore.exceptions
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from messaging.text import refused_character
from stack import infra
from tests.conftest import USER_AWS_ENDPOINT

pytestmark = pytest.mark.integration

# One character of each class: what the API accepts, and what it refuses (with who refuses it too).
ACCEPTED = ["\t", "\n", "\r", " ", "~", "\u00a0", "\ud7ff", "\ue000", "\ufdcf", "\ufffd", "\U00010000", "\U0010fffd"]
REFUSED_BY_POSTGRESQL = ["\x00", "\ud800", "\udfff"]
# (A lone surrogate cannot even be encoded into a request, so SQS never sees one.)
REFUSED_BY_SQS = ["\x00", "\x08", "\x1f", "\ufffe", "\uffff"]


async def _jsonb_roundtrip(sessions, value: str) -> str:
    async with sessions() as session:
        return (await session.execute(text("SELECT CAST(:doc AS jsonb) ->> 'v'"), {"doc": json.dumps({"v": value})})).scalar()


@pytest.mark.parametrize("character", ACCEPTED, ids=lambda ch: f"U+{ord(ch):04X}")
async def test_postgresql_keeps_every_accepted_character(sessions, character):
    assert refused_character(character) is None
    assert await _jsonb_roundtrip(sessions, f"a{character}b") == f"a{character}b"


@pytest.mark.parametrize("character", REFUSED_BY_POSTGRESQL, ids=lambda ch: f"U+{ord(ch):04X}")
async def test_postgresql_refuses_what_the_api_refuses_for_it(sessions, character):
    assert refused_character(character) == character
    with pytest.raises((DBAPIError, UnicodeEncodeError)):
        await _jsonb_roundtrip(sessions, f"a{character}b")


def _localstack() -> str | None:
    if not USER_AWS_ENDPOINT:
        return None
    try:
        return USER_AWS_ENDPOINT if httpx.get(f"{USER_AWS_ENDPOINT}/_localstack/health", timeout=2).status_code == 200 else None
    except httpx.HTTPError:
        return None


@pytest.fixture(scope="module")
def localstack_queue():
    endpoint = _localstack()
    if endpoint is None:
        pytest.skip("needs AWS_ENDPOINT_URL pointing at LocalStack: moto does not check message characters")
    saved = dict(os.environ)
    os.environ.update(infra.emulator_environment(endpoint))
    sqs = infra.client("sqs", endpoint)
    url = sqs.create_queue(QueueName=f"text-rules-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    yield sqs, url
    sqs.delete_queue(QueueUrl=url)
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("character", ACCEPTED, ids=lambda ch: f"U+{ord(ch):04X}")
def test_sqs_carries_every_accepted_character(localstack_queue, character):
    sqs, url = localstack_queue
    body = json.dumps({"v": f"a{character}b"}, ensure_ascii=False)
    sqs.send_message(QueueUrl=url, MessageBody=body)


@pytest.mark.parametrize("character", REFUSED_BY_SQS, ids=lambda ch: f"U+{ord(ch):04X}")
def test_sqs_refuses_what_the_api_refuses_for_it(localstack_queue, character):
    sqs, url = localstack_queue
    assert refused_character(character) == character
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        sqs.send_message(QueueUrl=url, MessageBody=f"a{character}b")
    assert refused.value.response["Error"]["Code"] in ("InvalidMessageContents", "InvalidParameterValue")
