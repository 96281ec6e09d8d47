"""The console's sign-in cookie and CSRF token, without a server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from orchestrator.console.routes import Session, _safe_next, _token_ok


@pytest.mark.parametrize(
    "configured, presented, ok",
    [
        (["s3cret"], "s3cret", True),
        (["s3cret"], "s3cret ", False),
        (["s3cret"], "", False),
        (["s3cret"], None, False),
        ([], "", False),
        ([], "anything", False),
        (["new-one", "old-one"], "old-one", True),
        (["new-one", "old-one"], "older-one", False),
        (["s3cret"], "s3crét", False),
    ],
)
def test_only_a_configured_operator_token_signs_in(configured, presented, ok):
    assert _token_ok(SimpleNamespace(operator_tokens=lambda: configured), presented) is ok


def test_the_cookie_round_trips_and_a_mangled_one_is_no_session():
    session = Session("s3cret", "ada", "nonce-1")
    assert Session.of_cookie(session.cookie()) == session
    for mangled in ("", "bm90IGpzb24", session.cookie()[:-6], "e30"):  # "e30" is {}: no fields
        assert Session.of_cookie(mangled) is None


def test_the_csrf_token_belongs_to_one_session_and_one_operator_token():
    session = Session("s3cret", "ada", "nonce-1")
    assert session.csrf == Session("s3cret", "eve", "nonce-1").csrf  # the name plays no part
    assert session.csrf != Session("s3cret", "ada", "nonce-2").csrf
    assert session.csrf != Session("rotated", "ada", "nonce-1").csrf
    assert (session.actor, Session("s3cret", "", "n").actor) == ("ada (console)", "console")


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
