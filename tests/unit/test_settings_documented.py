"""Every setting the services share is in the configuration table (docs/configuration.md)."""

from __future__ import annotations

import re
from pathlib import Path

from messaging.settings import ServiceSettings

CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _documented_variables() -> set[str]:
    section = CONFIGURATION.read_text()
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z0-9_<>]+)`", cell)}


def test_every_shared_setting_has_a_row_in_the_configuration_table():
    read = {f.validation_alias for f in ServiceSettings.model_fields.values() if isinstance(f.validation_alias, str)}
    assert read - _documented_variables() == set()
