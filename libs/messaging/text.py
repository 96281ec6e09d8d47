"""The text every service accepts: what PostgreSQL, SQS and SES can all carry.

Text that one of them refuses would be accepted by an API and then lost on the way (a
``jsonb`` column refuses NUL, SQS refuses most control characters and every lone
surrogate), so it is refused at the edge instead. The rule is the intersection of what
each of them documents, minus what no customer types on purpose:

* SQS message bodies: ``#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF``;
* PostgreSQL ``jsonb`` and ``text``: any character but U+0000; no lone surrogates in UTF-8;
* refused here as well: the other C0 and C1 control characters and DEL, which only garble
  a label or an email, and the Unicode noncharacters (U+FDD0-U+FDEF and the last two code
  points of every plane), which Unicode reserves for internal use.

Email addresses follow their own, stricter rule (ASCII only, as SES requires); see
``order_svc.api``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

ALLOWED_CONTROLS = frozenset("\t\n\r")


def refused_character(value: str) -> str | None:
    """The first character of ``value`` that the system cannot carry, or None."""
    for character in value:
        if not _acceptable(ord(character)) and character not in ALLOWED_CONTROLS:
            return character
    return None


def _acceptable(code: int) -> bool:
    if code < 0x20 or 0x7F <= code <= 0x9F:  # C0, DEL, C1
        return False
    if 0xD800 <= code <= 0xDFFF:  # surrogates: never valid on their own in UTF-8
        return False
    return not (0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE)  # noncharacters


def check_text(value: str) -> str:
    """Return ``value`` unchanged, or raise ``ValueError`` naming the refused character."""
    if (character := refused_character(value)) is not None:
        raise ValueError(f"contains a character that cannot be stored or sent: U+{ord(character):04X}")
    return value


Text = Annotated[str, AfterValidator(check_text)]
"""A string that passed :func:`check_text`; use it for every free-text field of an API."""
