"""An upgrade from the previous release (docs/releases.md) to this tree, under load.

The previous release runs from a git worktree of its commit, on its own Terraform applied to a
moto server of this test's; orders keep coming while this tree's Terraform is applied to the
same state and every service is rolled as ECS rolls it (stack/upgrade.py). Passes when every
saga ends as its order called for, the books balance and no queue or dead-letter queue holds a
message. With the previous release's standard reply queue removed in the same apply (as the
releases that replaced it by the FIFO queue did), the apply itself fails: prevent_destroy.
"""

from __future__ import annotations

import time

import httpx
import pytest

from contracts.topology import STANDARD_REPLIES, Naming
from stack import infra, upgrade
from tests.e2e.conftest import OPERATOR, OPERATOR_TOKEN
from tests.integration.test_infra import _require_terraform

pytestmark = pytest.mark.e2e
STOCK = 100_000


@pytest.fixture
def previous(tmp_path_factory):
    _require_terraform()
    release = upgrade.previous_release()
    with upgrade.worktree(release, tmp_path_factory.mktemp("release") / release.name) as tree:
        yield tree


@pytest.fixture
def emulator(tmp_path):
    port = infra.free_port()
    process = infra.start_emulator(port, tmp_path / "emulator.log")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def test_the_previous_release_upgrades_to_this_one_under_load_without_loss(previous, emulator, postgres_server, tmp_path):
    run = upgrade.Upgrade(
        previous,
        tmp_path,
        postgres_server,
        emulator,
        env={"SAGA_OPERATOR_TOKEN": OPERATOR_TOKEN, "RELAY_POLL_INTERVAL": "0.5", "CONSUMER_WAIT_SECONDS": "1"},
    )
    try:
        stack = run.start_previous()
        skus = [f"SKU-UPGRADE-{n}" for n in range(2)]
        for sku in skus:
            response = httpx.put(f"{stack.url('inventory_svc')}/stock/{sku}", json={"available": STOCK}, headers=OPERATOR)
            assert response.status_code == 200, response.text
        customers = upgrade.Customers(stack, skus)
        customers.start()
        try:
            time.sleep(5)  # the previous release alone, sagas in flight
            run.apply_this_release()  # while it keeps taking orders
            sqs = stack.client("sqs")
            kept = sqs.get_queue_url(QueueName=Naming(run.prefix).physical(STANDARD_REPLIES))["QueueUrl"]
            assert kept.endswith(f"{run.prefix}-orchestrator-replies"), "the standard reply queue is kept"
            run.roll()
            time.sleep(5)  # this release alone
        finally:
            customers.stop()
        assert len(customers.placed) > 30, "orders were in flight across the upgrade"
        assert not (problems := upgrade.check(stack, customers, OPERATOR, STOCK)), "\n".join(problems)
        assert {kind for kind in (o.kind for o in customers.placed)} == set(upgrade.KINDS)
    finally:
        run.stop()
