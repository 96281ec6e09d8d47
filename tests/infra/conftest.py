"""Offline checks of ``infra/`` and the Dockerfile: terraform validate, fmt, test (against a
mocked provider), console, checkov and hadolint. Nothing here reaches AWS or an emulator.

Terraform installs hashicorp/aws from the filesystem mirror /opt/tf-plugins when it exists
(``infra/terraform.rc``), otherwise from the registry; with neither, these tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
PROVIDER_MIRROR = Path("/opt/tf-plugins")
TERRAFORM_TIMEOUT = 300  # seconds for one terraform command; the family's cap is in each module

Terraform = Callable[..., subprocess.CompletedProcess]


def terraform_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "TF_"))}
    env |= {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    if PROVIDER_MIRROR.is_dir():
        env["TF_CLI_CONFIG_FILE"] = str(INFRA / "terraform.rc")  # the mirror, never the network
    return env


@pytest.fixture(scope="session")
def terraform(tmp_path_factory) -> Terraform:
    """Runs terraform in an initialised copy of ``infra/`` (so the working tree's own
    ``.terraform`` is left alone); returns the completed process, failing on a non-zero exit
    unless ``check=False``."""
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("terraform binary not found on PATH")
    workdir = tmp_path_factory.mktemp("infra")
    shutil.copytree(INFRA, workdir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))

    def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [binary, f"-chdir={workdir}", *args],
            env=terraform_env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TERRAFORM_TIMEOUT,
        )
        if check:
            assert result.returncode == 0, f"terraform {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    init = run("init", "-backend=false", "-no-color", check=False)
    if init.returncode != 0 and any(sign in init.stderr for sign in PROVIDER_UNAVAILABLE):
        where = f"the mirror {PROVIDER_MIRROR}" if PROVIDER_MIRROR.is_dir() else "the registry (no mirror at /opt/tf-plugins)"
        pytest.skip(f"terraform init could not install hashicorp/aws from {where}:\n{init.stderr[-2000:]}")
    assert init.returncode == 0, f"terraform init failed:\n{init.stdout}\n{init.stderr}"
    return run


# How `terraform init` says that it could not get the provider (as opposed to a broken
# configuration, which must fail the tests, not skip them).
PROVIDER_UNAVAILABLE = (
    "Failed to query available provider packages",
    "Failed to install provider",
    "could not connect to registry",
    "Failed to resolve provider packages",
)


@pytest.fixture(scope="session")
def evaluate(terraform: Terraform) -> Callable[[str], object]:
    """Evaluates an expression of the root module (locals, variables' defaults) offline."""

    def value(expression: str) -> object:
        out = terraform("console", "-no-color", stdin=f"jsonencode({expression})\n").stdout.strip()
        return json.loads(json.loads(out))

    return value
