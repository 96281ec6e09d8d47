"""The console's CSRF token and where it may send a browser after sign-in, without a server
(sessions themselves are server-side: tests/e2e/test_operators.py)."""

from __future__ import annotations

import pytest

from messaging.identity import Role
from orchestrator.console.routes import _safe_next
from orchestrator.operators import Session


def test_the_csrf_token_belongs_to_one_session():
    session = Session("secret-1", "ada", Role.OPERATOR, "nonce-1")
    assert session.csrf == Session("secret-1", "eve", Role.VIEWER, "nonce-1").csrf  # the name plays no part
    assert session.csrf != Session("secret-1", "ada", Role.OPERATOR, "nonce-2").csrf
    assert session.csrf != Session("secret-2", "ada", Role.OPERATOR, "nonce-1").csrf


@pytest.mark.parametrize("role, acts", [(Role.VIEWER, False), (Role.OPERATOR, True), (Role.ADMIN, True)])
def test_only_operators_and_admins_act(role, acts):
    assert Session("s", "ada", role, "n").may_act is acts


@pytest.mark.parametrize(
    "target, landed",
    [
        ("/console/sagas?status=running", "/console/sagas?status=running"),
        (None, "/console"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/\\evil.example", "/console"),
        ("/operator/sagas", "/console"),
    ],
)
def test_after_sign_in_only_a_console_page_is_a_destination(target, landed):
    assert _safe_next(target) == landed
