"""The step contracts against both sides of every step: each step of each saga definition is a
contract of ``contracts/steps.py``, and the service consuming its queue handles its commands and
answers SettleStep for it, under its name and its former names."""

from __future__ import annotations

import importlib
import uuid

import pytest

from contracts import messages as c
from contracts import steps
from messaging.envelope import MalformedMessage
from messaging.fakes import FakeUnitOfWork
from messaging.service import ServiceDefinition
from orchestrator.engine import Invoke, Local
from orchestrator.main import DEFINITIONS
from stack.services import SERVICES
from tests import factories

DEFINED = [(definition.name, step) for definition in DEFINITIONS for step in definition.steps]


@pytest.fixture(scope="module")
def consumers() -> dict[str, ServiceDefinition]:
    """Each queue's consuming service, as its entry point builds it (no server, no database)."""
    found = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAGA_OPERATOR_TOKEN", "a-token-for-these-tests")
        for service in SERVICES:
            patch.setenv(f"{service.env_prefix}DATABASE_URL", "postgresql://nobody@127.0.0.1/none")
            main = importlib.import_module(f"{service.module}.main")
            built = []

            def capture(definition, settings, create=main.create_app, built=built):
                built.append(definition)
                return create(definition, settings)

            patch.setattr(main, "create_app", capture)
            main.build_app()
            found |= {queue: built[0] for queue in built[0].queues}
    return found


@pytest.mark.parametrize("saga, step", DEFINED, ids=[f"{saga}.{step.name}" for saga, step in DEFINED])
def test_every_step_of_every_saga_is_its_contract(saga, step):
    contract = steps.BY_NAME[step.name]
    assert (contract.name, contract.participant, contract.formerly) == (step.name, step.participant, step.formerly)
    for invoke, call in ((step.action, contract.action), (step.compensation, contract.compensation)):
        if isinstance(invoke, Invoke):
            assert call is not None and (invoke.command, invoke.success, invoke.failure) == (
                call.command,
                call.success,
                call.failure,
            )
        else:
            assert call is None and (invoke is None or isinstance(invoke, Local))


def test_every_contract_is_a_step_of_a_saga():
    assert sorted(s.name for s in steps.STEPS) == sorted({step.name for _, step in DEFINED})  # versions share steps


@pytest.mark.parametrize("contract", steps.STEPS, ids=lambda s: s.name)
def test_the_service_consuming_a_steps_queue_handles_its_commands_and_settles_it(consumers, contract):
    service = consumers[contract.participant]
    assert set(contract.commands) | {c.SettleStep} <= set(service.handlers), service.name


NAMES = [(contract, name) for contract in steps.STEPS for name in contract.names]


@pytest.mark.parametrize("contract, name", NAMES, ids=[name for _, name in NAMES])
async def test_a_participant_answers_settle_step_for_every_step_it_owns_under_every_name(consumers, contract, name):
    settle = consumers[contract.participant].handlers[c.SettleStep]
    uow, order = FakeUnitOfWork(contract.participant), uuid.uuid4()
    request = factories.command(uuid.uuid4(), c.SettleStep(order_id=order, reason="put right by hand"), name)
    async with uow:
        await settle(uow, request, c.SettleStep.model_validate(request.payload))
        await uow.commit()
    [answer] = uow.sent
    assert (answer.message_type, answer.envelope.step, answer.to) == ("StepSettled", name, "queue:orchestrator-replies")


@pytest.mark.parametrize("queue", sorted({s.participant for s in steps.STEPS}))
async def test_a_settle_step_naming_a_step_the_participant_does_not_own_is_malformed(consumers, queue):
    settle = consumers[queue].handlers[c.SettleStep]
    other = next(s for s in steps.STEPS if s.participant != queue)
    request = factories.command(uuid.uuid4(), c.SettleStep(order_id=uuid.uuid4(), reason="by hand"), other.name)
    async with FakeUnitOfWork(queue) as uow:
        with pytest.raises(MalformedMessage, match="not one of ours"):
            await settle(uow, request, c.SettleStep.model_validate(request.payload))


def test_the_message_table_of_the_docs_names_each_messages_step():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "messages.md").read_text()
    table = text[text.index("## Message types") :].split("\n## ", 1)[0]
    rows = {cells[1].strip(): cells[-2] for line in table.splitlines() if len(cells := line.split("|")) > 6}
    for contract in steps.STEPS:
        for call in contract.calls:
            for message in call.messages:
                assert f"`{contract.name}`" in rows[message.__name__], f"docs/messages.md: {message.__name__}"
