"""``infra/`` is valid, formatted, passes its own ``terraform test`` (both configurations
planned against a mocked provider) and agrees with the Python code it deploys."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

from contracts import topology
from messaging import cloudwatch
from orchestrator.cancellation_saga import cancellation_saga
from orchestrator.engine import Invoke
from orchestrator.order_saga import order_saga

from .conftest import REPO, Terraform

pytestmark = [pytest.mark.infra, pytest.mark.timeout(600)]

SQS_METRICS = {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}


def test_configuration_is_valid(terraform) -> None:
    terraform("validate", "-no-color")


def test_configuration_is_formatted(terraform) -> None:
    result = terraform("fmt", "-check", "-recursive", "-diff", "-no-color", check=False)
    assert result.returncode == 0, f"run `terraform fmt -recursive infra`:\n{result.stdout}"


def test_plans_of_both_configurations_pass_their_assertions(terraform) -> None:
    # infra/tests/local.tftest.hcl (messaging only, as on LocalStack/moto) and
    # infra/tests/aws.tftest.hcl (deploy_services = true): least privilege, TLS-only
    # policies, encryption, alarm actions, secrets, rolling deploys, scaling.
    result = terraform("test", "-no-color", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout and " passed" in result.stdout


def _dashboard_metrics(body: dict) -> list[list]:
    return [metric for widget in body["widgets"] for metric in widget["properties"]["metrics"]]


def test_dashboard_names_only_metrics_the_code_sends(evaluate) -> None:
    metrics = _dashboard_metrics(evaluate("local.dashboard_body"))
    ours = [m for m in metrics if m[0] == cloudwatch.NAMESPACE]
    assert ours, "the dashboard shows no OrderSaga metric"
    unknown = {m[1] for m in ours} - cloudwatch.METRIC_NAMES
    assert not unknown, f"dashboard metrics missing from messaging.cloudwatch.METRIC_NAMES: {sorted(unknown)}"
    for metric in ours:
        dimensions = dict(zip(metric[2::2], metric[3::2], strict=True))
        assert set(dimensions) <= {cloudwatch.SERVICE_DIMENSION, cloudwatch.STEP_DIMENSION}, metric


def test_dashboard_shows_every_step_and_service(evaluate) -> None:
    metrics = _dashboard_metrics(evaluate("local.dashboard_body"))
    steps = {m[5] for m in metrics if m[1] == cloudwatch.STEP_LATENCY}
    # Every step that sends a command, in either saga, has a command-to-reply latency (create_order does not).
    assert steps == {s.name for saga in (order_saga(), cancellation_saga()) for s in saga.steps if isinstance(s.action, Invoke)}
    backlog = {m[3] for m in metrics if m[1] == "OutboxBacklog"}
    assert backlog == set(evaluate("keys(local.services)"))
    queues = {m[3] for m in metrics if m[0] == "AWS/SQS" and m[1] == "ApproximateNumberOfMessagesVisible"}
    naming = topology.Naming("saga")
    every_queue = {q.name for q in topology.QUEUES} | set(topology.DEAD_LETTER_QUEUES)
    assert {naming.physical(q) for q in every_queue} <= queues


def test_alarms_use_metric_names_the_code_sends(evaluate) -> None:
    assert evaluate("local.metric_namespace") == cloudwatch.NAMESPACE
    named = set(re.findall(r'metric_name\s*=\s*"(\w+)"', (REPO / "infra" / "alarms.tf").read_text()))
    ours = named - SQS_METRICS
    assert ours, "no alarm on an OrderSaga metric"
    assert ours <= cloudwatch.METRIC_NAMES, f"alarm metrics missing from METRIC_NAMES: {sorted(ours - cloudwatch.METRIC_NAMES)}"


def _consumed_queues(service: str) -> set[str]:
    """The ``queues=`` of the ServiceDefinition in ``<service>/main.py``."""
    tree = ast.parse(Path(importlib.import_module(f"{service}.main").__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ServiceDefinition":
            queues = next(k.value for k in node.keywords if k.arg == "queues")
            return {getattr(topology, element.id) for element in queues.elts}
    raise AssertionError(f"no ServiceDefinition in {service}/main.py")


def test_services_table_matches_the_code(evaluate) -> None:
    services = evaluate("local.services")
    assert set(services) == {"order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc"}
    for name, service in services.items():
        settings = importlib.import_module(f"{name}.settings").Settings
        assert settings.model_config["env_prefix"] == service["env_prefix"], name
        assert set(service["consumes"]) == _consumed_queues(name), name
        assert set(service["sends_to"]) <= {q.name for q in topology.QUEUES}, name
        assert set(service["publishes"]) <= {t.name for t in topology.TOPICS}, name


def test_queue_senders_in_terraform_are_the_topologys(evaluate) -> None:
    """The queue policies let send exactly the services whose ``sends_to`` names a queue, and the
    receivers refuse every sender but ``topology.SENDERS``': the two lists must be one list (the
    orchestrator also sends to every queue that has a dead-letter queue, to redrive it)."""
    services = evaluate("local.services")
    for queue in topology.QUEUES:
        terraform = {name.removesuffix("_svc") for name, s in services.items() if queue.name in s["sends_to"]}
        redriver = {topology.ORCHESTRATOR} if queue.dead_letter else set()
        assert terraform == set(topology.SENDERS[queue.name]) | redriver, queue.name


def test_pool_sizes_reach_the_settings_that_read_them(terraform: Terraform) -> None:
    """The task definitions' pool sizes (the connection budget) are named as ServiceSettings
    reads them and within its bounds: it ignores unknown names, so a misnamed one would
    leave a task on the local defaults and out of the budget without a word."""
    out = terraform(
        "console",
        "-no-color",
        "-var=deploy_services=true",
        "-var=image=order-saga:test",
        "-var=certificate_arn=arn:aws:acm:us-east-1:123456789012:certificate/0",
        stdin="jsonencode(local.database_pools)\n",
    ).stdout.strip()
    pools = json.loads(json.loads(out))
    assert set(pools) == {"order_svc", "orchestrator", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc"}
    for name, environment in pools.items():
        settings_class = importlib.import_module(f"{name}.settings").Settings
        fields = settings_class.model_fields
        assert set(environment) == {fields[f].validation_alias for f in ("db_pool_size", "db_max_overflow", "relay_pool_size")}
        settings = settings_class.model_validate(
            {"database_url": "postgresql://db/x"} | {k: str(v) for k, v in environment.items()}
        )
        assert (settings.db_pool_size, settings.db_max_overflow, settings.relay_pool_size) == (
            environment["DB_POOL_SIZE"],
            environment["DB_MAX_OVERFLOW"],
            environment["RELAY_POOL_SIZE"],
        )
