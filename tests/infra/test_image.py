"""The container image: its lock file pins what pyproject.toml asks for, and it holds every
package the services are built from."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO

pytestmark = pytest.mark.infra

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _locked() -> dict[str, str]:
    text = (REPO / "requirements.lock").read_text()
    return {canonicalize_name(name): version for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, re.M)}


def test_lock_satisfies_every_dependency_of_pyproject() -> None:
    # Offline and cheap; `make lock-check` compares with a fresh resolution from PyPI.
    locked = _locked()
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, pyproject.toml asks {requirement.specifier}: run `make lock`"
        )


def test_lock_pins_hashes() -> None:
    text = (REPO / "requirements.lock").read_text()
    for block in re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text.split("\n", 2)[2]):
        assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"


def test_image_holds_every_package_and_runs_as_a_user() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        top = package.rstrip("*")
        folder = "libs" if (REPO / "libs" / top).is_dir() else top  # messaging and contracts live under libs/
        assert re.search(rf"^COPY {folder} ", dockerfile, re.M), f"the Dockerfile does not copy {folder}/"
    assert re.search(r"^USER (?!root|0\b)\S+", dockerfile, re.M)
    assert "--require-hashes" in dockerfile and "requirements.lock" in dockerfile
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
