"""Who the caller of the public API is: with an identity provider configured (Amazon Cognito or
any OIDC provider: ``ORDER_JWT_ISSUER``, ``ORDER_JWT_AUDIENCE``, ``ORDER_JWT_JWKS_URL``), the
customer is the subject of a verified JWT, and only that customer may cancel the order. Without
one, the customer is whoever the order's body says (the local default: not safe on the internet).

PyJWT verifies the signature (with a key from the provider's JWKS, cached and refetched when a
token names a key not seen yet), the issuer, the audience, the expiry and not-before. Only
asymmetric algorithms are taken: a provider signs with its private key, and ``none`` or an HMAC
key would let anyone who knows the public key sign.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import jwt
from fastapi import HTTPException, Request

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
LEEWAY = 30  # seconds of clock skew allowed on exp and nbf


class CustomerTokens:
    """Verifies customers' bearer tokens against one issuer's published keys."""

    def __init__(self, issuer: str, audience: str, jwks_url: str) -> None:
        self.issuer, self.audience = issuer, audience
        self.keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)

    async def subject(self, authorization: str | None) -> str:
        """The verified token's subject; HTTPException 401 for a missing, bad or expired token."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token or len(token) > 8192:
            raise _unauthorized("a customer bearer token is required")
        try:
            # PyJWKClient fetches over blocking HTTP (once per key, then cached): off the loop.
            key = await asyncio.to_thread(self.keys.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as error:
            raise HTTPException(503, "the identity provider's keys cannot be fetched; retry shortly") from error
        except (jwt.PyJWTError, ValueError) as error:
            raise _unauthorized(f"the token is not valid: {type(error).__name__}") from error
        subject = claims["sub"]
        if not isinstance(subject, str) or not 1 <= len(subject) <= 64:
            raise _unauthorized("the token's subject is not a customer id")
        return subject


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="customer"'})


@dataclass(frozen=True)
class Caller:
    """The customer the request is from, when an identity provider says so (else None)."""

    customer_id: str | None = field(default=None)


async def caller(request: Request) -> Caller:
    """FastAPI dependency: the verified customer, or no one when no provider is configured."""
    tokens: CustomerTokens | None = request.app.state.customer_tokens
    if tokens is None:
        return Caller()
    return Caller(await tokens.subject(request.headers.get("authorization")))
