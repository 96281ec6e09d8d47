"""Versioned saga definitions: each saga runs on the version it started with, and changing the
steps of a version in use is caught by its committed fingerprint."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest

from contracts import messages as c
from orchestrator import engine as e
from orchestrator import versions
from orchestrator.cancellation_saga import cancellation_saga
from orchestrator.main import DEFINITIONS
from orchestrator.order_saga import order_saga
from orchestrator.settings import Settings
from tests.factories import T0, order_data

ADDED = "return_reserved_stock"
"""A step of another saga, inserted before process_payment: it stands in for the fraud check a
release might add (a step with a command and replies of its own)."""


def with_an_added_step(definition: e.SagaDefinition, **changes) -> e.SagaDefinition:
    steps = list(definition.steps)
    steps.insert(2, next(step for step in cancellation_saga().steps if step.name == ADDED))
    return dataclasses.replace(definition, steps=tuple(steps), **changes)


def test_every_registered_version_has_the_steps_committed_for_it():
    assert versions.changed(DEFINITIONS) == []


def test_a_definition_changed_without_a_new_version_is_caught():
    [problem] = versions.changed((with_an_added_step(order_saga()),))
    assert "order v1's steps changed" in problem and "add the change as v2" in problem
    # As a new version beside the old ones, only the new fingerprint is missing from the record.
    [missing] = versions.changed((order_saga(), order_saga(version=2), with_an_added_step(order_saga(), version=3)))
    assert "order v3 has no committed fingerprint" in missing


def test_timings_are_not_part_of_a_version():
    tuned = Settings(database_url="postgresql+asyncpg://x/y", timeouts={"saga_budget": 12, "process_payment": 3})
    assert [d.fingerprint() for d in tuned.timeouts.apply(*DEFINITIONS)] == [d.fingerprint() for d in DEFINITIONS]


def test_new_sagas_start_on_the_latest_version_and_each_runs_on_its_own_to_the_end():
    v1, v2 = order_saga(), with_an_added_step(order_saga(), version=2)
    registry = e.SagaRegistry(v1, v2)
    started = registry["order"].start(uuid.uuid4(), order_data(), T0).state
    assert started.version == 2 and [s.name for s in started.steps][2] == ADDED
    old = e.SagaEngine(v1).start(uuid.uuid4(), order_data(), T0).state
    assert old.version == 1
    engine = registry.engine_for(old)
    origin = dict(zip(("causation_id", "participant"), engine.genuine_origin(old, c.InventoryReserved), strict=True))
    after = engine.on_reply(old, c.InventoryReserved(order_id=old.data["order_id"]), T0 + timedelta(seconds=1), **origin)
    assert [type(o.message) for o in after.outgoing] == [c.ProcessPayment]  # v1 goes on as v1 did
    v2 = registry.engine_for(started)
    v2_origin = dict(zip(("causation_id", "participant"), v2.genuine_origin(started, c.InventoryReserved), strict=True))
    v2_after = v2.on_reply(started, c.InventoryReserved(order_id=started.data["order_id"]), T0, **v2_origin)
    assert [type(o.message) for o in v2_after.outgoing] == [c.ReturnReservedStock]  # v2's added step


def test_a_saga_of_a_version_not_registered_here_is_unknown():
    registry = e.SagaRegistry(order_saga())
    state = with_an_added_step(order_saga(), version=2)
    saga = e.SagaEngine(state).start(uuid.uuid4(), order_data(), T0).state
    with pytest.raises(e.UnknownVersion, match="version 2 is not registered here"):
        registry.engine_for(saga)


def test_two_definitions_may_not_share_a_name_and_version():
    with pytest.raises(ValueError, match="share a name and version"):
        e.SagaRegistry(order_saga(), with_an_added_step(order_saga()))  # both version 1
