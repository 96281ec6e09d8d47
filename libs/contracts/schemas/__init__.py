"""JSON Schemas of the envelope and of every message payload, generated from the pydantic
classes in :mod:`contracts.messages` and kept in this folder. ``python -m contracts.schemas``
rewrites them; a unit test fails when they drift from the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from messaging.envelope import Envelope

from ..messages import REGISTRY

FOLDER = Path(__file__).parent


def generate() -> dict[str, dict[str, Any]]:
    schemas = {"Envelope": Envelope.model_json_schema()}
    for message_type in REGISTRY:
        schema = message_type.model_json_schema()
        schema["x-kind"] = message_type.kind
        schemas[message_type.message_type()] = schema
    return schemas


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write() -> list[Path]:
    written = []
    for name, schema in generate().items():
        path = FOLDER / f"{name}.json"
        path.write_text(render(schema))
        written.append(path)
    return written
