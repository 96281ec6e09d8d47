"""A reply is the answer to a command, or nothing: forged replies sent straight to the
orchestrator's reply queue, as any principal able to reach it could, never move a saga.

payment_svc is stopped so that each saga waits on ``process_payment`` with its ProcessPayment
queued; then, one saga each:

1. a well-formed ``PaymentProcessed`` under payment's name, answering a made-up message id;
2. one answering the saga's real ProcessPayment (its id read where the orchestrator keeps it)
   but sent under another participant's name;
3. a genuine ``PaymentProcessed`` of another, finished saga, re-addressed to this one.

Each is refused and recorded in the saga's history; the saga goes on only when payment_svc,
started again, answers, with one charge per order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from contracts import messages as c
from contracts.topology import ORCHESTRATOR_REPLIES
from messaging.envelope import Envelope
from tests.conftest import eventually


async def _query(url: str, sql: str, **params) -> list:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


def query(stack, module: str, sql: str, **params) -> list:
    return asyncio.run(_query(stack.service_database_url(module), sql, **params))


def sent_envelope(stack, module: str, saga_id: str, message_type: str) -> Envelope:
    """The envelope ``module`` sent of ``message_type`` for the saga (from its outbox)."""
    [row] = query(
        stack, module, "SELECT body FROM outbox WHERE saga_id = :s AND message_type = :t", s=uuid.UUID(saga_id), t=message_type
    )
    return Envelope.model_validate_json(row.body)


def history(shop, saga_id: str) -> list[dict]:
    return shop.saga(saga_id)["history"]


def step(shop, saga_id: str, name: str) -> str | None:
    """The step's status; None while the saga is not started yet."""
    saga = shop.saga(saga_id)
    return next(s["status"] for s in saga["steps"] if s["name"] == name) if saga else None


def test_forged_replies_are_refused_and_only_the_participant_that_was_asked_moves_the_saga(shop):
    # A budget that outlasts the test's own pace on a busy machine: while payment_svc is down,
    # the step must still be waiting, not timed out, when the forged replies arrive.
    with shop.stack.restarted_with("orchestrator", ORCHESTRATOR_TIMEOUTS__SAGA_BUDGET="120"):
        _forged_replies_are_refused(shop)


def _forged_replies_are_refused(shop):
    stack = shop.stack
    sku = shop.new_sku(available=10)
    finished = shop.place(shop.order_body(sku, quantity=1))
    assert shop.settled(finished)[1]["status"] == "completed"
    old_reply = sent_envelope(stack, "payment_svc", finished["saga_id"], "PaymentProcessed")

    stack.stop_service("payment_svc")
    try:
        waiting = [shop.place(shop.order_body(sku, quantity=1)) for _ in range(3)]
        for placed in waiting:
            eventually(
                lambda p=placed: step(shop, p["saga_id"], "process_payment") == "running", timeout=15, what="waiting on payment"
            )
        made_up, wrong_sender, replayed = waiting

        def forge(placed: dict, envelope: Envelope) -> None:
            stack.send(ORCHESTRATOR_REPLIES, envelope.model_dump_json(), group=placed["saga_id"])

        def reply_to(placed: dict, **update) -> Envelope:
            message = c.PaymentProcessed(order_id=uuid.UUID(placed["order_id"]), payment_id=uuid.uuid4())
            envelope = Envelope.wrap(
                message, sender="payment", saga_id=uuid.UUID(placed["saga_id"]), step="process_payment", attempt=1
            )
            return envelope.model_copy(update=update)

        # 1. A well-formed reply under the right name, answering no command that was sent.
        forge(made_up, reply_to(made_up, causation_id=uuid.uuid4()))
        # 2. The real command's id, read where the orchestrator keeps it, but another sender.
        [(sent,)] = query(
            stack, "orchestrator", "SELECT sent FROM sagas WHERE saga_id = :s", s=uuid.UUID(wrong_sender["saga_id"])
        )
        command_id = uuid.UUID(sent["process_payment"]["command_ids"][-1])
        forge(wrong_sender, reply_to(wrong_sender, causation_id=command_id, sender="inventory"))
        # 3. A genuine reply of a finished saga, re-addressed (a new message id, or the inbox drops it).
        forge(
            replayed,
            old_reply.model_copy(
                update={"saga_id": uuid.UUID(replayed["saga_id"]), "message_id": uuid.uuid4(), "correlation_id": uuid.uuid4()}
            ),
        )

        def handled(saga_id: str) -> bool:
            """The forged reply was taken in: refused, or (were the check off) the step done."""
            return any(
                h["event"] == "reply_refused" or (h["event"] == "step_succeeded" and h["step"] == "process_payment")
                for h in history(shop, saga_id)
            )

        for placed in waiting:
            eventually(lambda p=placed: handled(p["saga_id"]), timeout=10, what=f"forged reply handled for {placed['saga_id']}")
        moved = {
            p["saga_id"]: (step(shop, p["saga_id"], "process_payment"), step(shop, p["saga_id"], "fulfill_order"))
            for p in waiting
        }
        assert set(moved.values()) == {("running", "pending")}, f"a forged reply moved a saga: {moved}"
        refused = [h for p in waiting for h in history(shop, p["saga_id"]) if h["event"] == "reply_refused"]
        assert all(h["step"] == "process_payment" for h in refused)
        assert "not payment-commands" in next(
            h["detail"] for h in history(shop, wrong_sender["saga_id"]) if h["event"] == "reply_refused"
        )
    finally:
        stack.start_service("payment_svc")

    for placed in waiting:
        order, saga = shop.settled(placed)
        assert saga["status"] == "completed" and order["status"] == "confirmed"
        payments = shop.payments(placed["order_id"])
        charges = [p for p in payments["payments"] if p["kind"] == "charge" and p["status"] == "succeeded"]
        assert len(charges) == 1 and Decimal(payments["charged"]) == Decimal(charges[0]["amount"])
    refusals = json.dumps([h for p in waiting for h in history(shop, p["saga_id"]) if h["event"] == "reply_refused"])
    assert refusals.count("reply_refused") == 3  # one each, and nothing else was refused
