"""notification_svc's message handlers: send_confirmation (no compensation: it is the last step)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

from messaging import contracts as c
from messaging import participant
from messaging.bus import Handlers
from messaging.envelope import Envelope
from messaging.topology import CUSTOMER_PUSH
from messaging.uow import UnitOfWork

from . import domain
from .tables import notifications

STEP = "send_confirmation"


async def send_confirmation(uow: UnitOfWork, envelope: Envelope, command: c.SendConfirmation) -> None:
    async def apply():
        domain.check_deliverable(command.customer_email)
        now, order = datetime.now(UTC), str(command.order_id)
        subject, body = domain.confirmation(order, command.total, command.currency)
        # The email is queued in this transaction and handed to SES by the email worker,
        # the same outbox discipline as every other effect; the push goes through the outbox.
        common = {"saga_id": envelope.saga_id, "order_id": command.order_id, "created_at": now}
        await uow.session.execute(notifications.insert().values(
            notification_id=uuid.uuid4(), channel="email", status="queued", recipient=command.customer_email,
            subject=subject, body=body, **common))
        await uow.session.execute(notifications.insert().values(
            notification_id=uuid.uuid4(), channel="push", status="sent", body=domain.push_text(order),
            sent_at=now, **common))
        await uow.send(c.CustomerPushed(order_id=command.order_id, customer_id=command.customer_id,
                                        text=domain.push_text(order)), f"topic:{CUSTOMER_PUSH}", causation=envelope)
        return c.ConfirmationSent(order_id=command.order_id)

    await participant.forward(
        uow, envelope, step=STEP, apply=apply, refusals=(domain.Undeliverable,),
        refuse=lambda reason: c.ConfirmationFailed(order_id=command.order_id, reason=reason),
    )


async def withdraw_confirmation(uow: UnitOfWork, envelope: Envelope, command: c.WithdrawConfirmation) -> None:
    async def undo():
        # Already handed over: an email cannot be recalled. Queued emails are dropped.
        await uow.session.execute(notifications.delete().where(
            notifications.c.saga_id == envelope.saga_id, notifications.c.status == "queued"))
        return c.ConfirmationWithdrawn(order_id=command.order_id)

    await participant.compensate(uow, envelope, step=STEP, undo=undo,
                                 done=lambda: c.ConfirmationWithdrawn(order_id=command.order_id))


HANDLERS: Handlers = {c.SendConfirmation: send_confirmation, c.WithdrawConfirmation: withdraw_confirmation,
                      c.SettleStep: participant.settle(STEP)}
