"""What order_svc keeps of a person, and for how long.

An order keeps the customer's email and shipping address, as the system of record, while it
may still need them (the confirmation, a cancellation's notice, a return). Once the order is
final and ``ORDER_PERSONAL_DATA_DAYS`` have passed, the janitor erases both; the order keeps
its ids, items and amounts, so the books still balance.
"""

from __future__ import annotations

FORGET_PERSONAL_DATA = """
UPDATE orders SET customer_email = NULL, shipping_address = NULL
WHERE ctid IN (
    SELECT ctid FROM orders
    WHERE status <> 'pending' AND updated_at < now() - CAST(:keep AS interval)
      AND (customer_email IS NOT NULL OR shipping_address IS NOT NULL)
    LIMIT :batch FOR UPDATE SKIP LOCKED
)
"""
"""The janitor's erasure of final orders' personal data past its retention, a batch at a time
(on the partial index ``orders_with_personal_data``)."""
