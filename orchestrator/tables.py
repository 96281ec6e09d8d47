"""The orchestrator's own database: saga instances and their history."""

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID

from messaging.tables import add_messaging_tables

metadata = MetaData()
add_messaging_tables(metadata)

sagas = Table(
    "sagas",
    metadata,
    Column("saga_id", UUID(as_uuid=True), primary_key=True),
    Column("definition", String(50), nullable=False),
    Column("definition_version", Integer, nullable=False, server_default="1"),
    # What the saga is about, as its definition names it (an order's id for both order sagas).
    Column("subject", String(100), nullable=False, index=True),
    Column("status", String(30), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("steps", JSONB, nullable=False),
    # Per step, the message ids its command and its compensation were sent under: a reply is
    # taken only if it names one of them (kept apart from ``steps``: see its migration).
    Column("sent", JSONB),
    Column("failed_step", String(100)),
    Column("failure_reason", Text),
    # Earliest deadline of any step in flight, kept with the saga so it survives restarts.
    Column("next_deadline", DateTime(timezone=True)),
    # Not before this may the deadline worker stage another CheckSagaDeadlines for the saga:
    # set when one is staged (claimed with SKIP LOCKED, so with several orchestrators one of
    # them stages it), cleared by every transition; the check itself is judged in the saga's
    # FIFO group, behind every reply that reached the queue before it.
    Column("deadline_check_at", DateTime(timezone=True)),
    # The saga's trace (traceparent/tracestate, when tracing): what happens to it with no
    # causing message (a deadline, an operator's action) is a span in that trace.
    Column("trace_context", JSONB),
    # Paused (an operator's action, or held at its start while its definition was paused).
    Column("paused_at", DateTime(timezone=True)),
    Column("pause_kind", String(20)),
    Column("paused_seconds", Float, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("sagas_due", "next_deadline", postgresql_where=text("next_deadline IS NOT NULL")),
    # Keyset pagination, newest first, with and without a status filter: a page is an
    # index range however many sagas exist (the console's list; EXPLAIN-checked in a test).
    Index("sagas_newest", "created_at", "saga_id"),
    Index("sagas_by_status_newest", "status", "created_at", "saga_id"),
    # What an operator searches by besides status: the failed step, the version, the customer.
    Index("sagas_by_failed_step_newest", "failed_step", "created_at", postgresql_where=text("failed_step IS NOT NULL")),
    Index("sagas_by_version", "definition", "definition_version", "created_at"),
    Index("sagas_by_customer_newest", text("(data ->> 'customer_id')"), "created_at"),
)

# What is left of a finished saga after ORCHESTRATOR_SAGA_RETENTION_DAYS: enough for
# GET /sagas/{id} to answer 410 (gone, and when) instead of 404 (never was). Kept a year.
purged_sagas = Table(
    "purged_sagas",
    metadata,
    Column("saga_id", UUID(as_uuid=True), primary_key=True),
    Column("definition", String(50), nullable=False),
    Column("status", String(30), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("purged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("archive", Text),
    Index("purged_sagas_purged_at", "purged_at"),
)

# A customer's personal data erased on request: who asked, why, and each service's answer
# (rows erased), complete once every participant answered (see ``erasure``).
erasures = Table(
    "erasures",
    metadata,
    Column("erasure_id", UUID(as_uuid=True), primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("requested_by", String(100), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("orders", Integer, nullable=False),
    Column("answers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("completed_at", DateTime(timezone=True)),
)

saga_history = Table(
    "saga_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("saga_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("event", String(50), nullable=False),
    Column("step", String(100)),
    Column("detail", Text),
    Column("message_id", UUID(as_uuid=True)),
)


paused_definitions = Table(
    "paused_definitions",
    metadata,
    Column("definition", String(50), primary_key=True),
    Column("paused_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
)
"""Definitions whose new sagas are held at their start until resumed; shared by every replica."""


operators = Table(
    "operators",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("role", String(20), nullable=False),
    # SHA-256 of the personal token, which is never stored (messaging.identity).
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_by", String(100), nullable=False),
    # Set when rotated (the old token works until then) or issued for a limited time.
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(100)),
    Index("operators_by_name", "name"),
)
"""Operators' personal tokens: a name and a role each; several rows of one name while a token is rotated."""


console_sessions = Table(
    "console_sessions",
    metadata,
    # SHA-256 of the random session id the cookie carries: a copy of this table signs no one in.
    Column("id_hash", String(64), primary_key=True),
    Column("operator", String(64), nullable=False),
    Column("role", String(20), nullable=False),
    # The token signed in with (its hash): revoking or rotating it past its grace ends the session.
    Column("token_hash", String(64), nullable=False),
    Column("nonce", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("source", String(100)),
    Index("console_sessions_expiry", "expires_at"),
)
"""The console's sign-ins, server-side: each ends at its expiry or at sign-out, whichever is first."""
