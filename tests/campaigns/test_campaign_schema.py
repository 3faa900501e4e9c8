"""The committed JSON Schema is current, strict, and agrees with the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestration.campaigns import export_schema
from orchestration.campaigns import schema as schema_module
from orchestration.campaigns.config import TRIGGER_TYPES
from orchestration.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "campaigns"
SCHEMA_FILE = SHIPPED / "schema.json"


def test_committed_schema_is_current() -> None:
    committed = SCHEMA_FILE.read_text(encoding="utf-8")
    assert json.loads(committed) == export_schema(), (
        "campaigns/schema.json is stale: run python -m orchestration.campaigns.schema"
    )
    assert committed == schema_module.render_schema()


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert schema_module.main(["--out", str(out), "--check"]) == 1  # missing
    assert schema_module.main(["--out", str(out)]) == 0
    assert schema_module.main(["--out", str(out), "--check"]) == 0
    stale = json.loads(out.read_text(encoding="utf-8"))
    del stale["properties"]["priority"]
    out.write_text(json.dumps(stale, indent=2), encoding="utf-8")
    assert schema_module.main(["--out", str(out), "--check"]) == 1


def test_schema_is_strict_and_lists_every_trigger() -> None:
    schema = export_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    definitions = schema["$defs"].values()
    assert all(
        definition.get("additionalProperties") is False
        for definition in definitions
        if definition.get("type") == "object"
    )
    trigger_tags = {
        definition["properties"]["type"]["const"]
        for definition in definitions
        if "type" in definition.get("properties", {})
        and "const" in definition["properties"]["type"]
    }
    assert trigger_tags == set(TRIGGER_TYPES)


def _yaml(path: Path) -> object:
    # the language server reads dates as strings, as JSON does
    text = path.read_text(encoding="utf-8")
    return json.loads(json.dumps(yaml.safe_load(text), default=str))


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.yml")), ids=lambda path: path.stem)
def test_shipped_files_pass_the_json_schema(path: Path) -> None:
    jsonschema.validate(_yaml(path), export_schema())


def test_json_schema_rejects_what_pydantic_rejects() -> None:
    document = _yaml(SHIPPED / "abandoned_cart_nearby_store.yml")
    assert isinstance(document, dict)
    validator = jsonschema.Draft202012Validator(export_schema())
    mistakes = {
        "unknown field": {**document, "colour": "red"},
        "wrong status": {**document, "status": "live"},
        "percent above 100": {**document, "offer": {**document["offer"], "value": 150}},
        "unknown trigger": {**document, "trigger": {**document["trigger"], "type": "nope"}},
        "holdout above 50": {**document, "holdout_percent": 60},
    }
    for name, broken in mistakes.items():
        assert list(validator.iter_errors(broken)), name
