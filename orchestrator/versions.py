"""The fingerprint of every saga definition version, committed beside the definitions.

``python -m orchestrator.versions`` prints what ``versions.json`` should hold for the
definitions registered in :data:`orchestrator.main.DEFINITIONS`; ``--write`` writes it. A test
fails when a registered version's steps differ from its committed fingerprint: a saga in flight
on that version would meet steps it did not start with. Change a saga by adding a version
(docs/design.md, "Changing a saga safely"), never by editing one in use.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .engine import SagaDefinition

COMMITTED = Path(__file__).with_name("versions.json")


def fingerprints(definitions: tuple[SagaDefinition, ...]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for definition in sorted(definitions, key=lambda d: (d.name, d.version)):
        found.setdefault(definition.name, {})[str(definition.version)] = definition.fingerprint()
    return found


def committed() -> dict[str, dict[str, str]]:
    return json.loads(COMMITTED.read_text())


def changed(definitions: tuple[SagaDefinition, ...]) -> list[str]:
    """Each registered version whose steps are not the ones committed for it, as a sentence."""
    known = committed()
    problems = []
    for name, versions in fingerprints(definitions).items():
        for version, fingerprint in versions.items():
            recorded = known.get(name, {}).get(version)
            if recorded is None:
                problems.append(f"{name} v{version} has no committed fingerprint: run python -m orchestrator.versions --write")
            elif recorded != fingerprint:
                problems.append(
                    f"{name} v{version}'s steps changed (fingerprint {recorded} committed, {fingerprint} now): sagas in "
                    f"flight on v{version} would meet steps they did not start with. Keep v{version} as it was and "
                    f"add the change as v{int(version) + 1}, registered beside it"
                )
    return problems


def main() -> None:
    from .main import DEFINITIONS

    text = json.dumps(fingerprints(DEFINITIONS), indent=1, sort_keys=True) + "\n"
    if "--write" in sys.argv:
        COMMITTED.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
