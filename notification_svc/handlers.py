"""notification_svc's message handlers: send_confirmation (undone only after a timeout: it is
the last step), the cancellation saga's notices, and SettleStep for both sagas' steps."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts import messages as c
from contracts import steps
from contracts.topology import CUSTOMER_PUSH, NOTIFICATION_COMMANDS
from messaging import erasure, participant
from messaging.bus import Handlers
from messaging.envelope import Envelope
from messaging.uow import UnitOfWork

from . import domain
from .tables import notifications


async def _notify(
    uow: UnitOfWork,
    envelope: Envelope,
    order_id: uuid.UUID,
    customer_id: str,
    email: str | None,
    message: tuple[str, str],
    push: str,
) -> None:
    """Queue an email (when there is an address) and send a push.

    The email is queued in this transaction and handed to SES by the email worker, the same
    outbox discipline as every other effect; the push goes through the outbox."""
    now = datetime.now(UTC)
    common = {"saga_id": envelope.saga_id, "order_id": order_id, "created_at": now}
    if email is not None:
        subject, body = message
        await uow.session.execute(
            notifications.insert().values(
                notification_id=uuid.uuid4(),
                channel="email",
                status="queued",
                recipient=email,
                subject=subject,
                body=body,
                **common,
            )
        )
    await uow.session.execute(
        notifications.insert().values(
            notification_id=uuid.uuid4(), channel="push", status="sent", body=push, sent_at=now, **common
        )
    )
    await uow.send(
        c.CustomerPushed(order_id=order_id, customer_id=customer_id, text=push), f"topic:{CUSTOMER_PUSH}", causation=envelope
    )


async def send_confirmation(uow: UnitOfWork, envelope: Envelope, command: c.SendConfirmation) -> None:
    async def apply():
        domain.check_deliverable(command.customer_email)
        order = str(command.order_id)
        await _notify(
            uow,
            envelope,
            command.order_id,
            command.customer_id,
            command.customer_email,
            domain.confirmation(order, command.total, command.currency),
            domain.push_text(order),
        )
        return c.ConfirmationSent(order_id=command.order_id)

    await participant.forward(
        uow,
        envelope,
        step=steps.SEND_CONFIRMATION,
        apply=apply,
        refusals=(domain.Undeliverable,),
        refuse=lambda reason: c.ConfirmationFailed(order_id=command.order_id, reason=reason),
    )


async def withdraw_confirmation(uow: UnitOfWork, envelope: Envelope, command: c.WithdrawConfirmation) -> None:
    async def undo():
        # Already handed over: an email cannot be recalled. Queued emails are dropped.
        await uow.session.execute(
            notifications.delete().where(notifications.c.saga_id == envelope.saga_id, notifications.c.status == "queued")
        )
        return c.ConfirmationWithdrawn(order_id=command.order_id)

    await participant.compensate(
        uow, envelope, step=steps.SEND_CONFIRMATION, undo=undo, done=lambda: c.ConfirmationWithdrawn(order_id=command.order_id)
    )


async def send_cancellation_notice(uow: UnitOfWork, envelope: Envelope, command: c.SendCancellationNotice) -> None:
    async def apply():
        if command.customer_email is not None:
            domain.check_deliverable(command.customer_email)
        subject, body = domain.cancellation(str(command.order_id))
        await _notify(uow, envelope, command.order_id, command.customer_id, command.customer_email, (subject, body), subject)
        return c.CancellationNoticeSent(order_id=command.order_id)

    await participant.forward(
        uow,
        envelope,
        step=steps.SEND_CANCELLATION_NOTICE,
        apply=apply,
        refusals=(domain.Undeliverable,),
        refuse=lambda reason: c.CancellationNoticeFailed(order_id=command.order_id, reason=reason),
    )


async def send_cancellation_refusal(uow: UnitOfWork, envelope: Envelope, command: c.SendCancellationRefusal) -> None:
    """Sent as the cancellation saga ends refused; nothing waits for it, and the inbox makes
    a redelivery harmless. An undeliverable address gets the push alone."""
    email = command.customer_email if command.customer_email and domain.deliverable(command.customer_email) else None
    subject, body = domain.cancellation_refused(str(command.order_id), command.reason)
    await _notify(uow, envelope, command.order_id, command.customer_id, email, (subject, body), subject)


PERSONAL_DATA = (erasure.PersonalData(notifications, ("recipient", "subject", "body"), by="order_id"),)
"""A notification's address (already erased once the email is handed over), subject and body."""


HANDLERS: Handlers = participant.handlers(
    steps.owned_by(NOTIFICATION_COMMANDS),
    {
        c.SendConfirmation: send_confirmation,
        c.WithdrawConfirmation: withdraw_confirmation,
        c.SendCancellationNotice: send_cancellation_notice,
        c.SendCancellationRefusal: send_cancellation_refusal,
    },
    settle_with=(c.SettleStep, c.step_settled),
    erase_with=(c.EraseCustomerData, c.customer_data_erased),
    personal_data=PERSONAL_DATA,
)
