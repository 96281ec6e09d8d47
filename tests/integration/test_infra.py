"""``infra/`` (Terraform) declares exactly the resources ``contracts.topology`` names.

Applies the Terraform to a throw-away moto server and inspects the result with boto3.
Needs the ``terraform`` binary and the offline provider mirror in /opt/tf-plugins (see
infra/README.md); skipped when either is missing. Takes about two minutes, most of it the
AWS provider waiting ~25 s for each wave of SQS queues and queue policies to "propagate".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.topology import DEAD_LETTER_QUEUES, MAX_RECEIVE_COUNT, QUEUES, TOPICS, Naming
from messaging import cloudwatch
from messaging.aws import region
from stack import infra

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
PROVIDER_MIRROR = Path("/opt/tf-plugins")
TERRAFORM = shutil.which("terraform")
REGION = region()  # the same region the boto3 clients below use
DLQ_RETENTION_SECONDS = 14 * 24 * 60 * 60


def _require_terraform() -> str:
    if TERRAFORM is None:
        pytest.skip("terraform binary not found on PATH")
    if not PROVIDER_MIRROR.is_dir():
        pytest.skip(f"offline provider mirror {PROVIDER_MIRROR} not found (terraform init cannot fetch hashicorp/aws)")
    return TERRAFORM


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory) -> Iterator[str]:
    _require_terraform()  # don't bother starting the emulator for a test that will skip
    port = infra.free_port()
    process = infra.start_emulator(port, tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _terraform(terraform: str, workdir: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "TF_"))}
    env |= {
        "TF_CLI_CONFIG_FILE": str(INFRA / "terraform.rc"),  # provider from the mirror, never the network
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    result = subprocess.run(
        [terraform, f"-chdir={workdir}", *args, "-no-color"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"terraform {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_terraform_creates_the_topology(moto_endpoint: str, tmp_path: Path) -> None:
    terraform = _require_terraform()
    for tf_file in INFRA.glob("*.tf"):
        shutil.copy(tf_file, tmp_path)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    naming = Naming(prefix)

    _terraform(terraform, tmp_path, "init", "-backend=false")
    _terraform(
        terraform,
        tmp_path,
        "apply",
        "-auto-approve",
        f"-var=endpoint_url={moto_endpoint}",
        f"-var=name_prefix={prefix}",
        f"-var=aws_region={REGION}",
        # moto silently drops RedriveAllowPolicy, so the provider would wait for it forever.
        "-var=restrict_dead_letter_sources=false",
    )
    outputs = {name: o["value"] for name, o in json.loads(_terraform(terraform, tmp_path, "output", "-json")).items()}

    # The outputs are keyed by logical name and cover exactly the topology.
    assert set(outputs["queue_urls"]) == {q.name for q in QUEUES}
    assert set(outputs["dead_letter_queue_urls"]) == set(DEAD_LETTER_QUEUES)
    assert set(outputs["topic_arns"]) == {t.name for t in TOPICS}

    sqs = infra.client("sqs", moto_endpoint)

    def attributes(logical: str) -> dict[str, str]:
        url = sqs.get_queue_url(QueueName=naming.physical(logical))["QueueUrl"]
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]

    for queue in QUEUES:
        attrs = attributes(queue.name)
        assert int(attrs["VisibilityTimeout"]) == queue.visibility_timeout, queue.name
        if queue.dead_letter:
            dlq_attrs = attributes(queue.dlq)
            redrive = json.loads(attrs["RedrivePolicy"])
            assert redrive["deadLetterTargetArn"] == dlq_attrs["QueueArn"], queue.name
            assert dlq_attrs["QueueArn"].endswith(f":{naming.physical(queue.dlq)}")
            assert int(redrive["maxReceiveCount"]) == MAX_RECEIVE_COUNT, queue.name
        else:
            assert "RedrivePolicy" not in attrs, queue.name

    for dlq in DEAD_LETTER_QUEUES:
        assert int(attributes(dlq)["MessageRetentionPeriod"]) == DLQ_RETENTION_SECONDS, dlq

    # Every queue is encrypted and refuses requests made without TLS.
    for logical in {q.name for q in QUEUES} | set(DEAD_LETTER_QUEUES):
        attrs = attributes(logical)
        assert attrs.get("SqsManagedSseEnabled") == "true", logical
        denies = [s for s in json.loads(attrs["Policy"])["Statement"] if s["Effect"] == "Deny"]
        assert [s["Condition"] for s in denies] == [{"Bool": {"aws:SecureTransport": "false"}}], logical

    topic_names = {t["TopicArn"].split(":")[-1] for t in infra.client("sns", moto_endpoint).list_topics()["Topics"]}
    for topic in TOPICS:
        assert naming.physical(topic.name) in topic_names, topic.name

    alarms = infra.client("cloudwatch", moto_endpoint).describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]
    watched = {
        dimension["Value"]
        for alarm in alarms
        if alarm["Namespace"] == "AWS/SQS" and alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
        for dimension in alarm["Dimensions"]
        if dimension["Name"] == "QueueName"
    }
    for dlq in DEAD_LETTER_QUEUES:
        assert naming.physical(dlq) in watched, f"no alarm on dead-letter queue {dlq}"

    # Every alarm notifies the alerts topic, which exists.
    assert naming.physical("alerts") in topic_names
    assert alarms and all(alarm["AlarmActions"] == [outputs["alerts_topic_arn"]] for alarm in alarms)
    assert {a["MetricName"] for a in alarms if a["Namespace"] == cloudwatch.NAMESPACE} == {
        "SagasAwaitingIntervention",
        "SagasOfVersionsNotRun",
        "OutboxOldestAgeSeconds",
        "MessagesRefused",
    }
