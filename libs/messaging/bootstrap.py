"""One login per service, each owning its own database and nothing else.

Run with the server's master credentials, once per deploy, before the services start (on AWS
the one-off ECS task ``<prefix>-bootstrap``, ``python -m messaging.bootstrap``; locally
``make up`` and every test stack through ``stack.infra.database_urls``). For each service:

* a login role named after its database, with a password, or on RDS with IAM database
  authentication instead (``rds_iam``: the service signs a 15-minute token with its task
  role, and no password exists anywhere);
* its database, owned by that role; CONNECT revoked from PUBLIC, so no other login (a
  compromised order_svc's, say) can even open it;
* every table, view, sequence and function already in it handed to that role, so that a
  database created by the master login in an earlier release keeps migrating.

The services never see the master credentials: their task definitions name their own role,
and migrations run as that role, which owns what it migrates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping

import asyncpg
import structlog

log = structlog.get_logger("bootstrap")

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def derived_password(master_password: str | None, role: str) -> str:
    """A role's password drawn from the master's: the same at every run (running services
    keep connecting), unknown to anyone without the master password."""
    return hmac.new((master_password or "").encode(), f"login:{role}".encode(), hashlib.sha256).hexdigest()


def _quoted(name: str) -> str:
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(f"{name!r} is not a role or database name (lower case, digits, _; at most 63)")
    return f'"{name}"'


async def provision(
    master_dsn: str,
    logins: Mapping[str, str],
    *,
    passwords: Mapping[str, str] | None,
    iam: bool,
    master_password: str | None = None,
) -> None:
    """For each ``role: database`` of ``logins``: the role (with ``passwords[role]``, or IAM
    authentication), its database owned by it and closed to everyone else. Idempotent."""
    for role, database in logins.items():  # before anything is done
        _quoted(role), _quoted(database)
    master = {"password": master_password} if master_password else {}
    admin = await asyncpg.connect(master_dsn, database="postgres", **master)
    try:
        for role, database in logins.items():
            r, d = _quoted(role), _quoted(database)
            exists = await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            password = None if iam or passwords is None else passwords[role]
            options = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
            if password is not None:
                options += " PASSWORD " + await admin.fetchval("SELECT quote_literal($1)", password)
            await admin.execute(f"{'ALTER' if exists else 'CREATE'} ROLE {r} WITH {options}")
            # The master must be a member to give the role its database (RDS's is no superuser).
            if not await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
                await admin.execute(f"GRANT {r} TO current_user")
            if iam and await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam'"):
                await admin.execute(f"GRANT rds_iam TO {r}")
            if await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
                await admin.execute(f"ALTER DATABASE {d} OWNER TO {r}")
            else:
                try:
                    await admin.execute(f"CREATE DATABASE {d} OWNER {r}")
                except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                    pass  # another bootstrap made it meanwhile
            await admin.execute(f"REVOKE ALL ON DATABASE {d} FROM PUBLIC")
            await admin.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {d} TO {r}")
            await _hand_over(master_dsn, database, role, master)
            log.info("login_provisioned", role=role, database=database, iam=iam)
    finally:
        await admin.close()


async def _hand_over(master_dsn: str, database: str, role: str, master: dict[str, str]) -> None:
    """Everything in the database's public schema owned by the role."""
    connection = await asyncpg.connect(master_dsn, database=database, **master)
    r = _quoted(role)
    try:
        async with connection.transaction():
            relations = await connection.fetch(
                """
                SELECT c.relname, c.relkind FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)
                  AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
                  AND NOT EXISTS (  -- a column's sequence follows its table
                    SELECT 1 FROM pg_depend dep WHERE dep.objid = c.oid AND dep.deptype IN ('a', 'i') AND c.relkind = 'S')
                """,
                role,
            )
            for relation in relations:
                name = await connection.fetchval("SELECT quote_ident($1)", relation["relname"])
                await connection.execute(f"ALTER TABLE public.{name} OWNER TO {r}")
            functions = await connection.fetch(
                """
                SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'public' AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = $1)
                """,
                role,
            )
            for function in functions:
                await connection.execute(f"ALTER FUNCTION {function['signature']} OWNER TO {r}")
            await connection.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {r}")
    finally:
        await connection.close()


async def drop(master_dsn: str, logins: Mapping[str, str]) -> None:
    """Each database and then its role (what a test stack leaves behind)."""
    admin = await asyncpg.connect(master_dsn, database="postgres")
    try:
        for role, database in logins.items():
            await admin.execute(f"DROP DATABASE IF EXISTS {_quoted(database)} WITH (FORCE)")
            await admin.execute(f"DROP ROLE IF EXISTS {_quoted(role)}")
    finally:
        await admin.close()


def main() -> None:
    """``python -m messaging.bootstrap``: ``BOOTSTRAP_MASTER_URL`` (no password in it),
    ``BOOTSTRAP_MASTER_PASSWORD`` (ECS puts the RDS-managed master secret's there),
    ``BOOTSTRAP_LOGINS`` (JSON: role -> database) and ``BOOTSTRAP_IAM`` (true on RDS)."""
    try:
        url = os.environ["BOOTSTRAP_MASTER_URL"]
        logins = json.loads(os.environ["BOOTSTRAP_LOGINS"])
    except (KeyError, ValueError) as error:
        sys.exit(f"bootstrap: BOOTSTRAP_MASTER_URL and BOOTSTRAP_LOGINS (a JSON object) are needed: {error}")
    if not isinstance(logins, dict) or not all(isinstance(v, str) for v in logins.values()):
        sys.exit("bootstrap: BOOTSTRAP_LOGINS must be a JSON object of role -> database")
    iam = os.environ.get("BOOTSTRAP_IAM", "false").lower() == "true"
    password = os.environ.get("BOOTSTRAP_MASTER_PASSWORD")
    if password:
        # RDS's managed secret is JSON ({"username": ..., "password": ...}); a plain value works too.
        try:
            password = json.loads(password)["password"]
        except (ValueError, TypeError, KeyError):
            pass
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    passwords = None if iam else {role: derived_password(password, role) for role in logins}
    asyncio.run(provision(dsn, logins, passwords=passwords, iam=iam, master_password=password))
    if secret := os.environ.get("BOOTSTRAP_OPERATOR_TOKEN_SECRET"):
        bootstrap_token(secret)


def bootstrap_token(secret_id: str) -> bool:
    """Draw the bootstrap operator token into its secret if it has none yet (never replaced:
    rotate it by hand, docs/runbook.md). True if written. Terraform creates the secret empty,
    so the token is in no plan and no state."""
    import boto3

    client = boto3.client("secretsmanager")
    if client.describe_secret(SecretId=secret_id).get("VersionIdsToStages"):
        return False
    client.put_secret_value(SecretId=secret_id, SecretString=secrets.token_urlsafe(36))
    log.info("bootstrap_token_written")
    return True


if __name__ == "__main__":
    main()
