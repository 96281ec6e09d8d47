"""``make up`` runs on the topology it finds on a given endpoint: it adopts, never fails on
attributes and never makes a second copy; when the topology is missing it says what to run.

On the session's emulator (a moto server, or AWS_ENDPOINT_URL), under fresh prefixes.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from contracts.topology import DEAD_LETTER_QUEUES, QUEUES, TOPICS, Naming
from stack import credentials, infra, supervisor, terraform

pytestmark = pytest.mark.integration


def _names(endpoint: str, naming: Naming) -> set[str]:
    """Every queue and topic under the prefix."""
    queues = infra.client("sqs", endpoint).list_queues(QueueNamePrefix=naming.physical(""), MaxResults=1000)
    topics = {t["TopicArn"].rsplit(":", 1)[-1] for t in infra.client("sns", endpoint).list_topics()["Topics"]}
    return {url.rsplit("/", 1)[-1] for url in queues.get("QueueUrls", [])} | {
        name for name in topics if name.startswith(naming.physical(""))
    }


def _made_elsewhere(endpoint: str, naming: Naming) -> None:
    """The topology as another tool makes it: other visibility timeouts, receive counts and JSON spelling."""
    sqs, sns = infra.client("sqs", endpoint), infra.client("sns", endpoint)
    for queue in QUEUES:
        attributes = {"VisibilityTimeout": "45"}
        if queue.dead_letter:
            dlq = sqs.create_queue(QueueName=naming.physical(queue.dlq), Attributes={"VisibilityTimeout": "45"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps({"maxReceiveCount": "3", "deadLetterTargetArn": arn}, indent=1)
        sqs.create_queue(QueueName=naming.physical(queue.name), Attributes=attributes)
    for topic in TOPICS:
        sns.create_topic(Name=naming.physical(topic.name))
    infra.client("ses", endpoint).verify_email_identity(EmailAddress="orders@shop.example")


def test_up_adopts_a_topology_with_other_attributes_and_changes_nothing(emulator):
    naming = Naming(f"ad{uuid.uuid4().hex[:8]}")
    _made_elsewhere(emulator, naming)
    before = _names(emulator, naming)
    sqs = infra.client("sqs", emulator)
    orders = sqs.get_queue_url(QueueName=naming.physical("order-commands"))["QueueUrl"]

    topology = supervisor.adopt(naming.prefix, emulator)
    # The quick path too finds what exists instead of asking SQS to create it again with its own attributes.
    again = infra.provision(naming, endpoint=emulator)

    assert set(topology.queue_urls) == {q.name for q in QUEUES} | set(DEAD_LETTER_QUEUES)
    assert set(topology.topic_arns) == {t.name for t in TOPICS}
    assert topology.queue_urls["order-commands"] == orders
    assert topology.created == again.created == ()
    assert _names(emulator, naming) == before
    attributes = sqs.get_queue_attributes(QueueUrl=orders, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "45"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] in (3, "3")


def test_up_without_the_topology_names_what_is_missing_and_creates_nothing(emulator):
    naming = Naming(f"ad{uuid.uuid4().hex[:8]}")
    _made_elsewhere(emulator, naming)
    sqs = infra.client("sqs", emulator)
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=naming.physical("payment-commands-dlq"))["QueueUrl"])
    empty = Naming(f"ad{uuid.uuid4().hex[:8]}")

    with pytest.raises(supervisor.TopologyNotDeployed) as partly:
        supervisor.adopt(naming.prefix, emulator)
    with pytest.raises(supervisor.TopologyNotDeployed) as wholly:
        supervisor.adopt(empty.prefix, emulator)

    assert f"1 resources of prefix {naming.prefix!r} on {emulator} missing" in str(partly.value)
    assert naming.physical("payment-commands-dlq") in str(partly.value)
    assert f"no queue, topic or SES sender of prefix {empty.prefix!r}" in str(wholly.value)
    assert f"make deploy-local PREFIX={empty.prefix}" in str(wholly.value)
    assert _names(emulator, empty) == set()
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=naming.physical("payment-commands-dlq"))


def test_provision_creates_what_is_missing_on_an_emulator_of_its_own(emulator):
    naming = Naming(f"ad{uuid.uuid4().hex[:8]}")

    topology = infra.provision(naming, endpoint=emulator)

    assert {naming.physical(q.name) for q in QUEUES} <= set(topology.created)
    redrive = json.loads(
        infra.client("sqs", emulator).get_queue_attributes(
            QueueUrl=topology.queue_urls["order-commands"], AttributeNames=["RedrivePolicy"]
        )["Attributes"]["RedrivePolicy"]
    )
    assert redrive["deadLetterTargetArn"].endswith(naming.physical("order-commands-dlq"))
    infra.remove(naming, endpoint=emulator)
    assert _names(emulator, naming) == set()


def test_terraform_keeps_dead_letter_sources_unrestricted_only_where_the_endpoint_is_not_localstack(emulator):
    variables = terraform.Deployment(emulator, "saga").variables()
    expected = "true" if terraform.is_localstack(emulator) else "false"
    assert f"-var=restrict_dead_letter_sources={expected}" in variables
    assert f"-var=endpoint_url={emulator}" in variables and "-var=name_prefix=saga" in variables


def test_up_generates_one_operator_token_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAGA_OPERATOR_TOKEN", raising=False)

    first = credentials.operator_token()
    second = credentials.operator_token()
    path = tmp_path / credentials.TOKEN_FILE
    monkeypatch.setenv("SAGA_OPERATOR_TOKEN", "from-env-0123456789")

    assert first == second and len(first) >= 32
    assert path.read_text().strip() == first and oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert credentials.operator_token() == "from-env-0123456789"
    assert "$SAGA_OPERATOR_TOKEN" in credentials.where()
