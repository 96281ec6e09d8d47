"""The orders API: customers place and read their orders; listing a customer's orders
needs the operator token."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from contracts import messages as c
from contracts.messages import CUSTOMER_ID
from contracts.topology import ORCHESTRATOR_COMMANDS
from messaging.http import Responses, operator_router, problem
from messaging.service import RuntimeDep, SessionDep
from messaging.text import check_text
from messaging.uow import UnitOfWork

from . import admission as admission_control
from . import domain
from .customers import Caller, caller
from .tables import idempotency_keys, order_sagas, orders

router = APIRouter(tags=["orders"])
ORDERS_REFUSED = Counter("orders_refused_total", "Orders refused with 503 because too many were in flight")
ORDERS_REFUSED_CUSTOMER = Counter(
    "orders_refused_per_customer_total", "Orders refused with 429 because their customer had as many in flight as one may"
)
guarded = operator_router(tags=["orders"])

CURRENCIES = frozenset({"USD", "EUR", "GBP", "CHF", "JPY", "CAD", "AUD", "SEK", "NOK", "DKK", "PLN", "CZK"})
MAX_ITEMS = 50
MAX_TOTAL = Decimal("9999999999.99")  # what the orders table and the Money type hold
IDEMPOTENCY_TTL = timedelta(hours=24)


def _email(value: str) -> str:
    check_text(value)
    try:
        # test_environment admits the reserved .test domain used by the sandbox (bounce.test).
        # SES takes only ASCII addresses: no SMTPUTF8 local part, and a Unicode domain is
        # sent in its ASCII (IDNA) form.
        checked = validate_email(value, check_deliverability=False, test_environment=True, allow_smtputf8=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    return checked.ascii_email or checked.normalized


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderLine(Strict):
    sku: str = Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,63}$")
    quantity: int = Field(gt=0, le=1000, strict=True)
    unit_price: Decimal = Field(gt=0, max_digits=12, decimal_places=2)

    @field_validator("unit_price")
    @classmethod
    def _cents(cls, value: Decimal) -> Decimal:
        return value.quantize(Decimal("0.01"))


class PlaceOrder(Strict):
    customer_id: str = Field(pattern=CUSTOMER_ID)
    customer_email: Annotated[str, Field(max_length=254), AfterValidator(_email)]
    currency: str
    items: list[OrderLine] = Field(min_length=1, max_length=MAX_ITEMS)
    payment_token: str = Field(pattern=r"^tok_[A-Za-z0-9_]{1,64}$")
    shipping_address: c.Address

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if value not in CURRENCIES:
            raise ValueError(f"unsupported currency; use one of {', '.join(sorted(CURRENCIES))}")
        return value

    @field_validator("items")
    @classmethod
    def _distinct_skus_and_total(cls, items: list[OrderLine]) -> list[OrderLine]:
        skus = [i.sku for i in items]
        if len(set(skus)) != len(skus):
            raise ValueError("each sku may appear once; add up the quantities")
        if domain.total([i.model_dump() for i in items]) > MAX_TOTAL:
            raise ValueError(f"order total over {MAX_TOTAL}")
        return items


class OrderAccepted(BaseModel):
    order_id: uuid.UUID
    saga_id: uuid.UUID
    status: Literal["pending"] = "pending"


ORDER_SAGA, CANCELLATION_SAGA = "order", "order_cancellation"
SagaStatus = Literal["running", "compensating", "completed", "compensated", "needs_intervention"]


class SagaOfOrder(BaseModel):
    saga_id: uuid.UUID
    definition: str
    status: SagaStatus


class CancellationAccepted(BaseModel):
    order_id: uuid.UUID
    saga_id: uuid.UUID
    definition: Literal["order_cancellation"] = "order_cancellation"
    status: SagaStatus


class OrderView(BaseModel):
    order_id: uuid.UUID
    saga_id: uuid.UUID
    status: Literal["pending", "confirmed", "cancelled"]
    cancel_reason: str | None
    items: list[c.Line]
    total: Decimal
    currency: str
    created_at: datetime
    updated_at: datetime
    sagas: list[SagaOfOrder]
    """Every saga about this order (the order saga, and a cancellation if one was asked for),
    with its status as the orchestrator last reported it."""


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Repeats of a request with the same key (per customer, for 24 hours) return the first response.",
    ),
]
CallerDep = Annotated[Caller, Depends(caller)]
"""The customer a verified token names, when an identity provider is configured (order_svc.customers)."""

PLACE_ORDER_RESPONSES: Responses = {
    202: {"headers": {"Location": {"description": "The order's URL", "schema": {"type": "string"}}}},
    400: {"description": "Invalid Content-Length"},
    413: {"description": "Body over the size limit (ORDER_MAX_BODY_BYTES, 64 KiB)"},
    401: {"description": "With an identity provider configured: no valid customer token"},
    422: {"description": "Invalid order, or an Idempotency-Key already used with another body"},
    429: {
        "description": "The customer has ORDER_MAX_IN_FLIGHT_PER_CUSTOMER orders in flight already; nothing was written",
        "headers": {"Retry-After": {"description": "Seconds to wait before placing it again", "schema": {"type": "integer"}}},
    },
    503: {
        "description": "Too many orders in flight to finish this one within the saga's budget; nothing was written",
        "headers": {"Retry-After": {"description": "Seconds to wait before placing it again", "schema": {"type": "integer"}}},
    },
}


@router.post("/orders", status_code=202, response_model=OrderAccepted, responses=PLACE_ORDER_RESPONSES)
async def place_order(
    body: PlaceOrder,
    rt: RuntimeDep,
    request: Request,
    response: Response,
    who: CallerDep,
    idempotency_key: IdempotencyKey = None,
):
    """Place an order; its saga runs after the response. Follow ``Location`` for its status.

    When more orders are in flight than can finish within the saga's budget, the answer is
    503 with ``Retry-After`` and nothing is written (see ``ORDER_MAX_IN_FLIGHT``, one bound
    for every replica together, and ``admission``). A customer with
    ``ORDER_MAX_IN_FLIGHT_PER_CUSTOMER`` orders in flight gets 429 the same way."""
    if who.customer_id is not None:  # a verified token says who the customer is, not the body
        body = body.model_copy(update={"customer_id": who.customer_id})
    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    if idempotency_key and (earlier := await _earlier_response(rt, body.customer_id, idempotency_key, request_hash)):
        return earlier
    admission: admission_control.Admission = request.app.state.admission
    if admission.target:  # the bound follows the finishing rate: keep it sampled while orders come
        await admission_control.refresh(rt, admission)
    if admission.full():  # a count of a moment ago already says so: no transaction, no lock
        return await _refused(rt, admission)
    accepted = OrderAccepted(order_id=uuid.uuid4(), saga_id=uuid.uuid4())
    items = [i.model_dump(mode="json") for i in body.items]
    now = datetime.now(UTC)
    async with UnitOfWork(rt.sessions, rt.name) as uow:
        # order_svc is the order's system of record, so it alone keeps where it goes and
        # whom to tell; the other services drop both once their step has used them.
        await uow.session.execute(
            orders.insert().values(
                order_id=accepted.order_id,
                saga_id=accepted.saga_id,
                customer_id=body.customer_id,
                customer_email=body.customer_email,
                shipping_address=body.shipping_address.model_dump(mode="json"),
                currency=body.currency,
                items=items,
                total=domain.total(items),
                status=domain.PENDING,
                created_at=now,
                updated_at=now,
            )
        )
        await _add_saga(uow, accepted.order_id, accepted.saga_id, ORDER_SAGA, now)
        # The saga starts in the same transaction that creates the order: no order without
        # a saga, no saga without an order.
        await uow.send(
            c.StartOrderSaga(order_id=accepted.order_id, total=domain.total(items), **body.model_dump(mode="json")),
            f"queue:{ORCHESTRATOR_COMMANDS}",
            saga_id=accepted.saga_id,
            correlation_id=accepted.saga_id,
        )
        if idempotency_key:
            scope = (idempotency_keys.c.customer_id == body.customer_id) & (idempotency_keys.c.key == idempotency_key)
            # An expired key is free again, even before the janitor has removed it.
            expired = idempotency_keys.c.created_at < now - IDEMPOTENCY_TTL
            await uow.session.execute(delete(idempotency_keys).where(scope, expired))
            # A concurrent request with this key that is still in flight makes this insert
            # wait for its transaction; once it commits, ours finds the key taken.
            claimed = await uow.session.execute(
                insert(idempotency_keys)
                .values(
                    customer_id=body.customer_id,
                    key=idempotency_key,
                    request_hash=request_hash,
                    order_id=accepted.order_id,
                    response=accepted.model_dump(mode="json"),
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(idempotency_keys.c.key)
            )
            if claimed.first() is None:
                await uow.session.rollback()
                return await _earlier_response(rt, body.customer_id, idempotency_key, request_hash)
        # Last, so that the deployment-wide admission lock is held for the counts and the commit only.
        verdict = await admission_control.admit(uow.session, admission, now, body.customer_id)
        if verdict is admission_control.Verdict.ADMITTED:
            await uow.commit()
    # Refused: rolled back on leaving the unit of work, nothing was written.
    if verdict is admission_control.Verdict.CUSTOMER_FULL:
        ORDERS_REFUSED_CUSTOMER.inc()
        return problem(
            429,
            f"this customer has {admission.per_customer} orders in flight, the most one customer may: place it again later",
            headers={"Retry-After": str(admission_control.MAX_RETRY_AFTER // 6)},
        )
    if verdict is admission_control.Verdict.FULL:
        return await _refused(rt, admission)
    response.headers["Location"] = _location(accepted.order_id)
    return accepted


async def _refused(rt, admission: admission_control.Admission) -> JSONResponse:
    in_flight = admission.in_flight  # the count that refused it; the sample may be newer
    await admission_control.refresh(rt, admission)  # the finishing rate, for Retry-After
    ORDERS_REFUSED.inc()
    return problem(
        503,
        f"{in_flight} orders in flight, the most that can finish in time now is {admission.bound()}: place it again later",
        headers={"Retry-After": str(admission.retry_after())},
    )


def _location(order_id: uuid.UUID | str) -> str:
    return f"/orders/{order_id}"


async def _earlier_response(rt, customer_id: str, key: str, request_hash: str):
    """The first response to this customer's key, if it was used in the last 24 hours."""
    async with rt.sessions() as session:
        row = (
            await session.execute(
                select(idempotency_keys).where(
                    idempotency_keys.c.customer_id == customer_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at >= datetime.now(UTC) - IDEMPOTENCY_TTL,
                )
            )
        ).first()
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise HTTPException(422, "Idempotency-Key was already used with a different request body")
    return JSONResponse(row.response, status_code=202, headers={"Location": _location(row.order_id)})


async def _add_saga(uow: UnitOfWork, order_id: uuid.UUID, saga_id: uuid.UUID, definition: str, now: datetime) -> None:
    await uow.session.execute(
        order_sagas.insert().values(saga_id=saga_id, order_id=order_id, definition=definition, status="running", changed_at=now)
    )


@router.post(
    "/orders/{order_id}/cancel",
    status_code=202,
    response_model=CancellationAccepted,
    responses={
        401: {"description": "With an identity provider configured: no valid customer token"},
        403: {"description": "With an identity provider configured: the order is another customer's"},
        404: {"description": "no such order"},
        409: {"description": "the order is pending, or was cancelled when it was placed"},
    },
)
async def cancel(order_id: uuid.UUID, rt: RuntimeDep, who: CallerDep) -> CancellationAccepted:
    """The customer cancels a confirmed order: starts an ``order_cancellation`` saga, or returns
    the one already started (running or finished) for this order. With an identity provider
    configured, only the order's own customer may (403 for anyone else)."""
    async with UnitOfWork(rt.sessions, rt.name) as uow:
        # The lock serialises concurrent requests for one order: the second finds the first's saga.
        order = (await uow.session.execute(select(orders).where(orders.c.order_id == order_id).with_for_update())).first()
        if order is None:
            raise HTTPException(404, f"no order {order_id}")
        if who.customer_id is not None and who.customer_id != order.customer_id:
            raise HTTPException(403, "only the customer who placed the order may cancel it")
        existing = (
            await uow.session.execute(
                select(order_sagas).where(order_sagas.c.order_id == order_id, order_sagas.c.definition == CANCELLATION_SAGA)
            )
        ).first()
        if existing is not None:
            return CancellationAccepted(order_id=order_id, saga_id=existing.saga_id, status=existing.status)
        try:
            domain.may_request_cancellation(order.status)
        except domain.CancellationRefused as refusal:
            raise HTTPException(409, str(refusal)) from None
        saga_id, now = uuid.uuid4(), datetime.now(UTC)
        await _add_saga(uow, order_id, saga_id, CANCELLATION_SAGA, now)
        await uow.send(
            c.StartOrderCancellation(order_id=order_id, customer_id=order.customer_id, customer_email=order.customer_email),
            f"queue:{ORCHESTRATOR_COMMANDS}",
            saga_id=saga_id,
            correlation_id=saga_id,
        )
        await uow.commit()
    return CancellationAccepted(order_id=order_id, saga_id=saga_id, status="running")


@guarded.get("/orders", response_model=list[OrderView])
async def list_orders(
    customer_id: Annotated[str, Query(pattern=CUSTOMER_ID)], session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[OrderView]:
    """A customer's orders, newest first."""
    rows = (
        await session.execute(
            select(orders).where(orders.c.customer_id == customer_id).order_by(orders.c.created_at.desc()).limit(limit)
        )
    ).all()
    return await _views(session, rows)


@router.get("/orders/{order_id}", response_model=OrderView, responses={404: {"description": "No such order"}})
async def get_order(order_id: uuid.UUID, session: SessionDep) -> OrderView:
    """One order and its status; its id is unguessable, so it needs no token."""
    row = (await session.execute(select(orders).where(orders.c.order_id == order_id))).first()
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    [view] = await _views(session, [row])
    return view


async def _views(session, rows) -> list[OrderView]:
    ids = [row.order_id for row in rows]
    sagas: dict[uuid.UUID, list[SagaOfOrder]] = {i: [] for i in ids}
    for saga in await session.execute(
        select(order_sagas).where(order_sagas.c.order_id.in_(ids)).order_by(order_sagas.c.definition)
    ):
        sagas[saga.order_id].append(SagaOfOrder.model_validate(saga, from_attributes=True))
    return [OrderView.model_validate(dict(row._mapping) | {"sagas": sagas[row.order_id]}) for row in rows]
