"""The operator token of a local run (``make up``, ``make demo``, ``make bench``)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = Path(".run") / "operator-token"


def operator_token() -> str:
    """``SAGA_OPERATOR_TOKEN`` if set; otherwise the token in ``.run/operator-token``,
    generated (readable by its owner only) the first time."""
    if token := os.environ.get("SAGA_OPERATOR_TOKEN"):
        return token
    if TOKEN_FILE.exists():
        return TOKEN_FILE.read_text().strip()
    TOKEN_FILE.parent.mkdir(exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token


def where() -> str:
    """Where the operator finds the token, for the console."""
    if os.environ.get("SAGA_OPERATOR_TOKEN"):
        return "operator token: $SAGA_OPERATOR_TOKEN"
    return f"operator token: {TOKEN_FILE.resolve()}  (export SAGA_OPERATOR_TOKEN=$(cat {TOKEN_FILE}) for sagactl)"
