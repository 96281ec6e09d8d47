"""The API's text rule against the documented rules of what carries the text.

* SQS message bodies: ``#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF``
  (SendMessage, MessageBody);
* PostgreSQL: ``text`` and ``jsonb`` cannot hold U+0000, and the database's UTF-8 encoding
  cannot hold a lone surrogate;
* SES: addresses are ASCII (no SMTPUTF8), a Unicode domain goes in its IDNA form.

Beyond those, the API refuses control characters (Unicode category Cc) other than tab, line
feed and carriage return, and the 66 Unicode noncharacters.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import messages as c
from messaging.text import check_text, refused_character
from order_svc.api import PlaceOrder

NONCHARACTERS = {*range(0xFDD0, 0xFDF0), *(plane * 0x10000 + low for plane in range(17) for low in (0xFFFE, 0xFFFF))}


def sqs_allows(value: str) -> bool:
    return all(
        ch in "\t\n\r" or 0x20 <= ord(ch) <= 0xD7FF or 0xE000 <= ord(ch) <= 0xFFFD or 0x10000 <= ord(ch) <= 0x10FFFF
        for ch in value
    )


def postgres_allows(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def also_refused(value: str) -> bool:
    return any((unicodedata.category(ch) == "Cc" and ch not in "\t\n\r") or ord(ch) in NONCHARACTERS for ch in value)


# Every code point is possible, surrogates included, with the edges of each range made likely.
EDGES = [
    0x0,
    0x8,
    0x9,
    0xA,
    0xD,
    0x1F,
    0x20,
    0x7E,
    0x7F,
    0x9F,
    0xA0,
    0xD7FF,
    0xD800,
    0xDFFF,
    0xE000,
    0xFDCF,
    0xFDD0,
    0xFDEF,
    0xFDF0,
    0xFFFD,
    0xFFFE,
    0xFFFF,
    0x10000,
    0x1FFFE,
    0x10FFFD,
    0x10FFFF,
]
characters = st.one_of(st.sampled_from([chr(c) for c in EDGES]), st.characters(codec=None, categories=None))
texts = st.text(characters, max_size=20)


@settings(max_examples=2000)
@given(texts)
def test_text_accepted_by_the_api_is_exactly_what_sqs_and_postgresql_carry_less_controls_and_noncharacters(value):
    accepted = refused_character(value) is None
    assert accepted == (sqs_allows(value) and postgres_allows(value) and not also_refused(value))
    if accepted:  # what the relay sends and PostgreSQL stores
        assert json.loads(json.dumps({"v": value}, ensure_ascii=False).encode("utf-8")) == {"v": value}


@given(texts)
@example("Ada\x00")
@example("Ada\ud800")
def test_every_address_field_applies_the_rule(value):
    fields = {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
    for field in ("name", "line1", "line2", "city", "postal_code"):
        candidate = fields | {field: "x" + value[:15]}
        try:
            c.Address(**candidate)
            valid = True
        except ValidationError:
            valid = False
        assert valid == (refused_character(candidate[field]) is None), (field, candidate[field])


def _order(email: str) -> dict:
    return {
        "customer_id": "c-1",
        "customer_email": email,
        "currency": "USD",
        "payment_token": "tok_visa",
        "items": [{"sku": "SKU-1", "quantity": 1, "unit_price": "1.00"}],
        "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "1", "country": "US"},
    }


@settings(max_examples=300)
@given(st.one_of(st.emails(), texts.map(lambda t: f"{t}@example.com")))
def test_an_accepted_email_is_one_ses_can_send_to(email):
    try:
        accepted = PlaceOrder(**_order(email)).customer_email
    except ValidationError:
        return
    assert accepted.isascii() and check_text(accepted) == accepted


@pytest.mark.parametrize(
    "email, expected",
    [
        ("ada@bücher.example", "ada@xn--bcher-kva.example"),  # IDNA form, which SES takes
        ("jöhn@example.com", None),  # SMTPUTF8 local part: SES refuses it
        ("ada\x00@example.com", None),
    ],
)
def test_email_addresses_follow_ses(email, expected):
    if expected is None:
        with pytest.raises(ValidationError):
            PlaceOrder(**_order(email))
    else:
        assert PlaceOrder(**_order(email)).customer_email == expected
