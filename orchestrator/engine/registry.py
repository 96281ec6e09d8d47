"""Every saga definition an orchestrator runs, by name and version, and by the commands addressed to it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .definition import SagaDefinition
from .state import SagaState
from .transitions import SagaEngine


class UnknownVersion(LookupError):
    """A saga of a definition's version this orchestrator does not run (an older or newer
    release runs it, during a rolling deploy): its messages are left for one that does."""

    def __init__(self, definition: str, version: int, known: Iterable[int]) -> None:
        super().__init__(f"saga definition {definition!r} version {version} is not registered here (known: {sorted(known)})")
        self.definition, self.version = definition, version


class SagaRegistry:
    """The engines of the definitions, every version registered: a saga row names its definition
    and version, so a reply reaches the engine the saga started on (even when two definitions
    share a reply type), and a new saga starts on the latest version of its definition."""

    def __init__(self, *definitions: SagaDefinition, start: Mapping[str, int] | None = None) -> None:
        self.versions = {(d.name, d.version): SagaEngine(d) for d in definitions}
        if len(self.versions) != len(definitions):
            raise ValueError("two saga definitions share a name and version")
        self.engines: dict[str, SagaEngine] = {}
        """The version of each definition a new saga starts on: the one ``start`` names, else the latest."""
        for (name, _version), engine in sorted(self.versions.items(), key=lambda item: item[0]):
            self.engines[name] = engine
        for name, version in (start or {}).items():
            if name not in self.engines:
                continue  # a definition this process does not run at all
            if (name, version) not in self.versions:
                known = sorted(v for (n, v) in self.versions if n == name)
                raise ValueError(
                    f"new {name} sagas are to start on version {version}, which is not registered (registered: {known})"
                )
            self.engines[name] = self.versions[(name, version)]
        latest = list(self.engines.values())
        reports = [e.definition.settles_unstarted for e in latest if e.definition.settles_unstarted is not None]
        if len(set(reports)) != len(reports):
            raise ValueError("two saga definitions are settled unstarted by one command")

    def __getitem__(self, name: str) -> SagaEngine:
        """The latest version of definition ``name``."""
        return self.engines[name]

    def engine_for(self, state: SagaState) -> SagaEngine:
        """The engine of the version ``state`` started on; :class:`UnknownVersion` if not here."""
        engine = self.versions.get((state.definition, state.version))
        if engine is None:
            known = [v for (name, v) in self.versions if name == state.definition]
            raise UnknownVersion(state.definition, state.version, known)
        return engine

    def all_versions(self) -> list[SagaDefinition]:
        return [e.definition for _, e in sorted(self.versions.items())]

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
        return frozenset().union(*(e.replies() for e in self.versions.values()))

    def step_of_message_types(self) -> dict[str, str]:
        return {k: v for e in self.versions.values() for k, v in e.step_of_message_types().items()}
