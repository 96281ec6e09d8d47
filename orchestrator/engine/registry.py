"""Every saga definition an orchestrator runs, by name and by the commands addressed to it."""

from __future__ import annotations

from .definition import SagaDefinition
from .transitions import SagaEngine


class SagaRegistry:
    """The engines of the definitions; a saga row names its definition, so a reply reaches the
    right one even when two definitions share a reply type."""

    def __init__(self, *definitions: SagaDefinition) -> None:
        self.engines = {d.name: SagaEngine(d) for d in definitions}
        if len(self.engines) != len(definitions):
            raise ValueError("two saga definitions share a name")
        reports = [d.settles_unstarted for d in definitions if d.settles_unstarted is not None]
        if len(set(reports)) != len(reports):
            raise ValueError("two saga definitions are settled unstarted by one command")

    def __getitem__(self, name: str) -> SagaEngine:
        return self.engines[name]

    def starts(self) -> frozenset[type]:
        """The commands that start a saga."""
        return frozenset(e.definition.start for e in self.engines.values() if e.definition.start is not None)

    def unstarted_reports(self) -> frozenset[type]:
        """The commands that ask about a saga that may never have started."""
        return frozenset(
            e.definition.settles_unstarted for e in self.engines.values() if e.definition.settles_unstarted is not None
        )

    def settled_unstarted_by(self, command: type) -> SagaEngine:
        """The engine of the definition whose unstarted sagas ``command`` asks about."""
        return next(e for e in self.engines.values() if e.definition.settles_unstarted is command)

    def replies(self) -> frozenset[type]:
        return frozenset().union(*(e.replies() for e in self.engines.values()))

    def step_of_message_types(self) -> dict[str, str]:
        return {k: v for e in self.engines.values() for k, v in e.step_of_message_types().items()}
