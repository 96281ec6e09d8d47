"""The image's locked dependencies (requirements.lock) against the known vulnerabilities PyPI
reports (pip-audit). Where the vulnerability database cannot be reached, or knows none of the
packages (a mirror without PyPI's JSON API), the test is skipped and says so: pip-audit itself
would report "no known vulnerabilities" for packages it could not look up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = [pytest.mark.infra, pytest.mark.timeout(300)]

PIP_AUDIT = Path(sys.executable).with_name("pip-audit")


def test_locked_dependencies_have_no_known_vulnerabilities() -> None:
    result = subprocess.run(
        [
            str(PIP_AUDIT),
            "--disable-pip",
            "--require-hashes",
            "-r",
            str(REPO / "requirements.lock"),
            "--format",
            "json",
            "--progress-spinner",
            "off",
            "--timeout",
            "30",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"pip-audit could not reach its vulnerability database: {result.stderr.strip()[-300:]}")
    dependencies = report["dependencies"]
    audited = [d for d in dependencies if "skip_reason" not in d]
    if not audited:
        pytest.skip(f"the vulnerability database knows none of the {len(dependencies)} locked packages here (no PyPI JSON API)")
    vulnerable = {f"{d['name']}=={d['version']}": [v["id"] for v in d["vulns"]] for d in audited if d["vulns"]}
    assert not vulnerable, f"known vulnerabilities in requirements.lock (update and `make lock`): {vulnerable}"
