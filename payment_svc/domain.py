"""The payment provider's sandbox rules, with no I/O.

Like a card processor's test cards: the token decides the outcome.
"""

from __future__ import annotations

import hashlib


class PaymentDeclined(Exception):
    """The charge was declined: a business failure, never retried."""


class RefundRejected(Exception):
    """The provider rejected the refund: a person has to step in."""


class ScreeningRefused(Exception):
    """The fraud screen refused the order: a business failure, never retried."""


SCREENING_LIMIT = 5000
"""The sandbox's fraud screen refuses an order of this total or more (order saga version 2)."""

APPROVE, DECLINE, REFUND_FAILS = "tok_visa", "tok_chargeDeclined", "tok_refundFail"
KNOWN_TOKENS = frozenset({APPROVE, DECLINE, REFUND_FAILS})


def charge(token: str) -> None:
    if token == DECLINE:
        raise PaymentDeclined("card declined")
    if token not in KNOWN_TOKENS:
        raise PaymentDeclined("unknown payment token")


def fingerprint(token: str) -> str:
    """What is kept of a token to route a refund to the same instrument: a one-way hash, so
    the stored value cannot be charged again (a real provider's charge id plays this role)."""
    return hashlib.sha256(token.encode()).hexdigest()


def refund(token_fingerprint: str) -> None:
    if token_fingerprint == fingerprint(REFUND_FAILS):
        raise RefundRejected("refund rejected by the payment provider")


def screen(total: object) -> None:
    if float(str(total)) >= SCREENING_LIMIT:
        raise ScreeningRefused(f"the fraud screen refuses orders of {SCREENING_LIMIT} or more")
