"""Every setting the services share is in the README's configuration table."""

from __future__ import annotations

import re
from pathlib import Path

from messaging.settings import ServiceSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented_variables() -> set[str]:
    text = README.read_text()
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z0-9_<>]+)`", cell)}


def test_every_shared_setting_has_a_row_in_the_configuration_table():
    read = {f.validation_alias for f in ServiceSettings.model_fields.values() if isinstance(f.validation_alias, str)}
    assert read - _documented_variables() == set()
