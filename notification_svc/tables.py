"""notification_svc's own database: one row per message to a customer."""

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects.postgresql import UUID

from messaging.tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", UUID(as_uuid=True), primary_key=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("order_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("channel", String(10), nullable=False),  # email | push
    Column("status", String(10), nullable=False),  # queued | sent
    # Kept only until the email is handed to SES, then erased: the address is personal
    # data that this service needs for one step.
    Column("recipient", String(254)),
    Column("subject", Text),
    Column("body", Text),
    Column("provider_message_id", String(200)),
    # Per-email retry state: a failing address backs off on its own and never holds up
    # the emails queued behind it; after MAX_EMAIL_ATTEMPTS it is marked failed.
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)
