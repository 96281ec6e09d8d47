"""A third saga, of the tests alone: points for an order, then a voucher by email.

Its messages, queues and step contracts are declared here and nowhere in the system; the
orchestrator runs it once it is registered (``SagaRegistry(*DEFINITIONS, loyalty_saga())``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from contracts import messages as c
from messaging.steps import Call, StepContract
from orchestrator.engine import Data, Notify, SagaDefinition
from orchestrator.saga_steps import by_order, invoke

LOYALTY_COMMANDS, VOUCHER_COMMANDS = "loyalty-commands", "voucher-commands"


class StartLoyaltySaga(c.StartSaga):
    definition: Literal["loyalty"] = "loyalty"
    points: int


class ReservePoints(c.Command):
    points: int


class PointsReserved(c.Reply):
    ledger_id: str


class PointsRefused(c.FailureReply):
    pass


class ReleasePoints(c.Command):
    ledger_id: str | None = None


class PointsReleased(c.Reply):
    pass


class SendVoucher(c.Command):
    points: int


class VoucherSent(c.Reply):
    pass


class VoucherBounced(c.FailureReply):
    pass


class ConfirmPoints(c.Command):
    """The saga completed; no reply."""


RESERVE_POINTS = StepContract(
    "reserve_points",
    LOYALTY_COMMANDS,
    action=Call(ReservePoints, PointsReserved, PointsRefused),
    compensation=Call(ReleasePoints, PointsReleased),
)
SEND_VOUCHER = StepContract("send_voucher", VOUCHER_COMMANDS, action=Call(SendVoucher, VoucherSent, VoucherBounced))


def loyalty_saga() -> SagaDefinition:
    return SagaDefinition(
        name="loyalty",
        subject="order_id",
        start=StartLoyaltySaga,
        steps=(
            invoke(RESERVE_POINTS, reserve_points, undo=release_points, keep=("ledger_id",)),
            invoke(SEND_VOUCHER, send_voucher),
        ),
        on_completed=(Notify(LOYALTY_COMMANDS, by_order(ConfirmPoints)),),
        step_timeout=timedelta(seconds=2),
        resend_after=timedelta(seconds=1),
        budget=timedelta(seconds=6),
        max_compensation_attempts=2,
    )


def reserve_points(data: Data) -> ReservePoints:
    return ReservePoints(order_id=data["order_id"], points=data["points"])


def release_points(data: Data) -> ReleasePoints:
    return ReleasePoints(order_id=data["order_id"], ledger_id=data.get("ledger_id"))


def send_voucher(data: Data) -> SendVoucher:
    return SendVoucher(order_id=data["order_id"], points=data["points"])
