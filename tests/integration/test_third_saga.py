"""A saga of the tests' own (``tests/sagas/loyalty.py``) through the orchestrator's handlers on
real PostgreSQL: registered beside this system's sagas and nothing else, it is started,
answered, timed out, escalated and resolved by hand, every message staged in the outbox."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from contracts import messages as c
from contracts.topology import PARTICIPANT_OF
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork
from orchestrator import repository
from orchestrator.engine import SagaRegistry
from orchestrator.handlers import CLOCK_MARGIN, Orchestrator
from orchestrator.main import DEFINITIONS
from tests import factories
from tests.sagas import loyalty as ly

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def orchestrator() -> Orchestrator:
    # Its participants send under these names, each answering for its queue.
    participants = {**PARTICIPANT_OF, "loyalty": ly.LOYALTY_COMMANDS, "voucher": ly.VOUCHER_COMMANDS}
    return Orchestrator(SagaRegistry(*DEFINITIONS, ly.loyalty_saga()), participants=participants)


async def handle(sessions, orchestrator: Orchestrator, message, saga_id: uuid.UUID, **envelope) -> None:
    wrapped = Envelope.wrap(message, sender="orchestrator", saga_id=saga_id, **envelope)
    async with UnitOfWork(sessions, "orchestrator") as uow:
        await orchestrator.handlers()[type(message)](uow, wrapped, message)
        await uow.commit()


async def answer(sessions, orchestrator: Orchestrator, message, saga_id: uuid.UUID, step: str, sender: str) -> None:
    """A participant's reply to the saga's latest command for ``step``."""
    async with sessions() as session:
        state = await repository.load(session, saga_id, lock=False)
    wrapped = factories.answer(state, message, step, sender=sender)
    async with UnitOfWork(sessions, "orchestrator") as uow:
        await orchestrator.handlers()[type(message)](uow, wrapped, message)
        await uow.commit()


async def staged(sessions, saga_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    """(message type, destination, step) of what the saga staged, in order."""
    async with sessions() as session:
        rows = await session.execute(
            text("SELECT message_type, destination, body::jsonb->>'step' AS step FROM outbox WHERE saga_id = :id ORDER BY id"),
            {"id": saga_id},
        )
        return [(r.message_type, r.destination, r.step) for r in rows]


async def test_it_runs_to_its_end_through_the_handlers(orchestrator_db, orchestrator):
    sessions, saga_id, order = orchestrator_db, uuid.uuid4(), uuid.uuid4()
    await handle(sessions, orchestrator, ly.StartLoyaltySaga(order_id=order, points=50), saga_id)
    await answer(sessions, orchestrator, ly.PointsReserved(order_id=order, ledger_id="L-1"), saga_id, "reserve_points", "loyalty")
    await answer(sessions, orchestrator, ly.VoucherSent(order_id=order), saga_id, "send_voucher", "voucher")
    assert await staged(sessions, saga_id) == [
        ("ReservePoints", "queue:loyalty-commands", "reserve_points"),
        ("SendVoucher", "queue:voucher-commands", "send_voucher"),
        ("ConfirmPoints", "queue:loyalty-commands", None),
    ]
    async with sessions() as session:
        state = await repository.load(session, saga_id, lock=False)
    assert state is not None and (state.definition, state.status, state.subject) == ("loyalty", "completed", str(order))


async def test_silence_escalates_and_a_person_settles_it_at_its_participant(orchestrator_db, orchestrator):
    sessions, saga_id, order = orchestrator_db, uuid.uuid4(), uuid.uuid4()
    await handle(sessions, orchestrator, ly.StartLoyaltySaga(order_id=order, points=50), saga_id)
    # No answer: deadline checks resend, then time the step out, then give up on its undo.
    for _ in range(12):
        async with sessions() as session:
            state = await repository.load(session, saga_id, lock=False)
        if state.status == "needs_intervention":
            break
        await asyncio.sleep(max((state.next_deadline - datetime.now(UTC)).total_seconds(), 0) + CLOCK_MARGIN.total_seconds())
        await handle(sessions, orchestrator, c.CheckSagaDeadlines(checked_at=datetime.now(UTC)), saga_id)
    assert state.status == "needs_intervention"
    async with UnitOfWork(sessions, "orchestrator") as uow:
        resolved = await orchestrator.resolve(uow, saga_id, "points released by hand", "ops")
        await uow.commit()
    assert resolved.status == "compensated"
    sent = await staged(sessions, saga_id)
    assert [t for t, _, _ in sent].count("ReservePoints") >= 2  # resent before its budget was spent
    assert ("CompensationEscalated", "queue:saga-escalations", None) in sent
    assert sent[-1] == ("SettleStep", "queue:loyalty-commands", "reserve_points")
