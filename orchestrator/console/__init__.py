"""The saga console: a web page at ``/console`` where an operator sees every saga, its
timeline and the dead letters, and acts on them.

Server-rendered (Jinja2, autoescaped) with a little plain JavaScript for the live overview
and the confirmation dialog; no build step and nothing fetched from elsewhere. Sign-in is
with the operator token, kept in an ``HttpOnly``, ``SameSite=Strict`` cookie and checked
again on every request; each form carries a CSRF token derived from the session. Actions go
through :mod:`orchestrator.operations`, the same code as the operator endpoints.
"""

from .routes import router

__all__ = ["router"]
