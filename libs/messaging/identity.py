"""Who is calling an operator endpoint, and what they may do.

Every operator has a name and a role:

* ``viewer`` reads (every ``GET``), nothing else;
* ``operator`` also acts: retry, resolve, pause, bulk actions, redrive, ``PUT /stock``,
  shipment dispatch and return;
* ``admin`` also issues, rotates and revokes operators' tokens.

A caller proves who they are with a bearer token, one of two kinds:

* a **personal token** (``sgo_`` and 43 random characters), issued by an admin with
  ``sagactl operators add``. Only its SHA-256 is stored, in the orchestrator's database
  (``operators``): a token is 256 random bits, so a fast hash is as good as a slow one and
  costs nothing per request (GitHub and PyPI store their API tokens the same way).
  The orchestrator looks it up in its own table; every other service asks the
  orchestrator (``GET /operator/whoami`` at ``SAGA_IDENTITY_URL``) and keeps the answer
  for ``SAGA_IDENTITY_CACHE_SECONDS``, so a revoked token stops working everywhere within
  that time, and at once on the orchestrator and the console;
* the **bootstrap token** ``SAGA_OPERATOR_TOKEN`` (and ``SAGA_OPERATOR_TOKEN_PREVIOUS``
  while it is rotated): the admin named ``bootstrap``, for issuing the first personal
  tokens and for break-glass. Everything it does is audited under that name.

The actor recorded for any action is always the identity's name, never anything a request says.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import httpx
import structlog

log = structlog.get_logger("identity")

TOKEN_PREFIX = "sgo_"
_TOKEN = re.compile(r"sgo_[A-Za-z0-9_-]{43}")
BOOTSTRAP = "bootstrap"
"""The name of the identity the bootstrap token (SAGA_OPERATOR_TOKEN) stands for."""
NAME = r"[a-z][a-z0-9._-]{1,62}"
"""An operator's name: lower case, as in an email address's local part (``ada``, ``grace.h``)."""


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        return self.role.rank >= needed.rank


def new_token() -> str:
    """A personal token: 256 random bits, recognisable by its prefix (secret scanners can match it)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("latin-1", "replace")).hexdigest()


def is_personal(token: str) -> bool:
    return _TOKEN.fullmatch(token) is not None


class Directory(Protocol):
    """Where personal tokens are looked up."""

    async def identify(self, token: str) -> Identity | None: ...


def token_matches(given: bytes, tokens: list[str]) -> bool:
    """Whether ``given`` is one of ``tokens``, every one compared in constant time."""
    matches = [secrets.compare_digest(given, token.encode()) for token in tokens]
    return any(matches)


class Bootstrap:
    """The bootstrap token(s): the admin named ``bootstrap``."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens

    def identify(self, token: str) -> Identity | None:
        return Identity(BOOTSTRAP, Role.ADMIN) if token_matches(token.encode("latin-1", "replace"), self.tokens) else None

    def hashes(self) -> set[str]:
        return {token_hash(t) for t in self.tokens}


class Nobody:
    """No directory (a service without ``SAGA_IDENTITY_URL``): only the bootstrap token is known."""

    async def identify(self, token: str) -> Identity | None:
        return None


class Remote:
    """The orchestrator's directory, asked over HTTP; answers are kept ``ttl`` seconds (refusals
    a fifth of that, so that a token issued a moment ago is soon known), at most ``size`` of them."""

    def __init__(self, url: str, ttl: float, size: int = 1024, timeout: float = 3.0) -> None:
        self.url, self.ttl, self.size = url.rstrip("/"), ttl, size
        self.timeout = timeout
        self._cache: OrderedDict[str, tuple[float, Identity | None]] = OrderedDict()
        self._client: httpx.AsyncClient | None = None
        self._lock = asyncio.Lock()

    async def identify(self, token: str) -> Identity | None:
        key, now = token_hash(token), time.monotonic()
        if (hit := self._cache.get(key)) is not None and hit[0] > now:
            self._cache.move_to_end(key)
            return hit[1]
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        response = await self._client.get(f"{self.url}/operator/whoami", headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200:
            body = response.json()
            found: Identity | None = Identity(str(body["name"]), Role(body["role"]))
        elif response.status_code == 401:
            found = None
        else:  # the orchestrator could not say: refuse now, remember nothing
            log.warning("identity_lookup_failed", status=response.status_code)
            return None
        async with self._lock:
            self._cache[key] = (now + (self.ttl if found else self.ttl / 5), found)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return found

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


@dataclass
class Authenticator:
    """The bootstrap token first, then the directory of personal tokens."""

    bootstrap: Bootstrap
    directory: Directory

    async def identify(self, token: str) -> Identity | None:
        if (found := self.bootstrap.identify(token)) is not None:
            return found
        if not is_personal(token):
            return None
        try:
            return await self.directory.identify(token)
        except (httpx.HTTPError, ValueError, KeyError) as error:  # unreachable, or an answer that is not one
            log.warning("identity_lookup_failed", error_type=type(error).__name__)
            return None
