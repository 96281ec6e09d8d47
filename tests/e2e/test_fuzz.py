"""Schemathesis over every service's live OpenAPI document: no generated request may get a
5xx, or a response that breaks the document (status, content type, headers, schema)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from stack.services import SERVICES
from tests.e2e.conftest import OPERATOR_TOKEN

pytestmark = pytest.mark.e2e

CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
)
EXAMPLES = 25  # per operation and phase: the six services take about a minute together
TIME_CAP = 60  # seconds per service; the family stays within six minutes even on a loaded machine


@pytest.mark.parametrize("module", [s.module for s in SERVICES])
def test_no_generated_request_breaks_the_api(stack, tmp_path: Path, module):
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{stack.url(module)}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "20261125",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-shrink",
        "--header",
        f"Authorization: Bearer {OPERATOR_TOKEN}",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIME_CAP, cwd=tmp_path)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{module}: schemathesis over its {TIME_CAP}s cap\n{(expired.stdout or b'')[-3000:]!r}")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"{module} after {elapsed:.0f}s:\n{result.stdout[-6000:]}{result.stderr[-2000:]}"
