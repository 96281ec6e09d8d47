"""Operators' personal tokens and the console's sessions, in the orchestrator's database.

The orchestrator is the directory every service asks (``GET /operator/whoami``): see
:mod:`messaging.identity` for the roles and the two kinds of token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from messaging.identity import BOOTSTRAP, Bootstrap, Identity, Role, new_token, token_hash

from .tables import console_sessions, operators


def _active(now: datetime):
    return and_(operators.c.revoked_at.is_(None), or_(operators.c.expires_at.is_(None), operators.c.expires_at > now))


class OperatorTable:
    """The directory of personal tokens (and the bootstrap token), by the token or by its hash."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], bootstrap: Bootstrap) -> None:
        self.sessions, self.bootstrap = sessions, bootstrap

    async def identify(self, token: str) -> Identity | None:
        return await self.by_hash(token_hash(token))

    async def by_hash(self, hashed: str) -> Identity | None:
        """Whose the token of this hash is, if it is valid now (the bootstrap token's too)."""
        if hashed in self.bootstrap.hashes():
            return Identity(BOOTSTRAP, Role.ADMIN)
        async with self.sessions() as db:
            row = (
                await db.execute(
                    select(operators.c.name, operators.c.role).where(operators.c.token_hash == hashed, _active(datetime.now(UTC)))
                )
            ).first()
        return Identity(row.name, Role(row.role)) if row else None


@dataclass(frozen=True)
class Issued:
    name: str
    role: Role
    token: str
    created_at: datetime
    expires_at: datetime | None


async def issue(
    db: AsyncSession, name: str, role: Role, by: str, *, expires_at: datetime | None = None, now: datetime | None = None
) -> Issued:
    """A new personal token for ``name``: shown once, stored only as its hash. Refuses a name
    that already has a valid token and another role (rotate, or revoke first)."""
    now = now or datetime.now(UTC)
    current = (await db.execute(select(operators.c.role).where(operators.c.name == name, _active(now)))).scalars().all()
    if current:
        raise ValueError(f"{name} already has a token; rotate it, or revoke it first")
    token = new_token()
    await db.execute(
        insert(operators).values(
            id=uuid.uuid4(),
            name=name,
            role=role.value,
            token_hash=token_hash(token),
            created_at=now,
            created_by=by,
            expires_at=expires_at,
        )
    )
    return Issued(name, role, token, now, expires_at)


async def rotate(db: AsyncSession, name: str, by: str, grace: timedelta, *, now: datetime | None = None) -> Issued:
    """A new token for ``name``, with the same role; the old one works ``grace`` longer."""
    now = now or datetime.now(UTC)
    rows = (
        await db.execute(
            select(operators.c.id, operators.c.role, operators.c.expires_at)
            .where(operators.c.name == name, _active(now))
            .with_for_update()
        )
    ).all()
    if not rows:
        raise LookupError(f"no operator {name} with a valid token")
    until = now + grace
    for row in rows:
        if row.expires_at is None or row.expires_at > until:
            await db.execute(update(operators).where(operators.c.id == row.id).values(expires_at=until))
    token = new_token()
    role = Role(rows[0].role)
    await db.execute(
        insert(operators).values(
            id=uuid.uuid4(), name=name, role=role.value, token_hash=token_hash(token), created_at=now, created_by=by
        )
    )
    return Issued(name, role, token, now, None)


async def revoke(db: AsyncSession, name: str, by: str, *, now: datetime | None = None) -> int:
    """Revoke every token of ``name``, and end their console sessions; how many tokens."""
    now = now or datetime.now(UTC)
    revoked = await db.execute(
        update(operators)
        .where(operators.c.name == name, operators.c.revoked_at.is_(None))
        .values(revoked_at=now, revoked_by=by)
        .returning(operators.c.token_hash)
    )
    hashes = list(revoked.scalars())
    if not hashes:
        raise LookupError(f"no operator {name}")
    await db.execute(
        update(console_sessions)
        .where(console_sessions.c.token_hash.in_(hashes), console_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return len(hashes)


async def listing(db: AsyncSession, *, now: datetime | None = None) -> list[dict]:
    """Every operator with a valid token, one row per token (two while one is rotated)."""
    now = now or datetime.now(UTC)
    rows = await db.execute(
        select(operators.c.name, operators.c.role, operators.c.created_at, operators.c.created_by, operators.c.expires_at)
        .where(_active(now))
        .order_by(operators.c.name, operators.c.created_at)
    )
    return [dict(r._mapping) for r in rows]


# --------------------------------------------------------------------------- console sessions
@dataclass(frozen=True)
class Session:
    """A signed-in operator: the cookie's secret id, who they are, and their forms' CSRF token."""

    secret: str
    name: str
    role: Role
    nonce: str

    @property
    def actor(self) -> str:
        return self.name

    @property
    def identity(self) -> Identity:
        return Identity(self.name, self.role)

    @property
    def may_act(self) -> bool:
        return self.role.rank >= Role.OPERATOR.rank

    @property
    def csrf(self) -> str:
        # Derived from the secret the cookie carries: a page on another origin can neither
        # read it nor compute it, and a new session voids every form issued before.
        return hmac.new(self.secret.encode(), f"csrf:{self.nonce}".encode(), hashlib.sha256).hexdigest()


async def open_session(db: AsyncSession, identity: Identity, token: str, lifetime: timedelta, source: str | None) -> Session:
    secret, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    now = datetime.now(UTC)
    await db.execute(
        insert(console_sessions).values(
            id_hash=token_hash(secret),
            operator=identity.name,
            role=identity.role.value,
            token_hash=token_hash(token),
            nonce=nonce,
            created_at=now,
            expires_at=now + lifetime,
            source=(source or "")[:100] or None,
        )
    )
    return Session(secret, identity.name, identity.role, nonce)


async def find_session(db: AsyncSession, directory: OperatorTable, secret: str) -> Session | None:
    """The session whose cookie carries ``secret``, if it has not expired or been signed out of,
    and the token it was opened with is still valid (the role is the token's now)."""
    if not secret or len(secret) > 100:
        return None
    row = (
        await db.execute(
            select(console_sessions).where(
                console_sessions.c.id_hash == token_hash(secret),
                console_sessions.c.revoked_at.is_(None),
                console_sessions.c.expires_at > func.now(),
            )
        )
    ).first()
    if row is None:
        return None
    identity = await directory.by_hash(row.token_hash)
    if identity is None or identity.name != row.operator:
        return None
    return Session(secret, identity.name, identity.role, row.nonce)


async def close_session(db: AsyncSession, secret: str) -> bool:
    closed = await db.execute(
        update(console_sessions)
        .where(console_sessions.c.id_hash == token_hash(secret), console_sessions.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(closed.rowcount)  # type: ignore[attr-defined]
