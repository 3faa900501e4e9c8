"""The JSON Schema of a campaign file, exported from the pydantic models.

Editors with a YAML language server read ``campaigns/schema.json`` (each campaign file starts
with ``# yaml-language-server: $schema=./schema.json``) to complete and check fields while a
marketer types. Regenerate it after changing the models::

    python -m orchestration.campaigns.schema          # writes campaigns/schema.json
    python -m orchestration.campaigns.schema --check  # exit 1 if the file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestration.campaigns.config import Campaign

SCHEMA_ID = "https://github.com/omnichannel-retail-pipeline/campaigns/schema.json"


def export_schema() -> dict[str, Any]:
    """The campaign JSON Schema (draft 2020-12) as a dict; deterministic for a given model."""
    schema = Campaign.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "description": (
            "One marketing campaign of the omnichannel retail pipeline. "
            "See campaigns/README.md for every field."
        ),
    }


def render_schema() -> str:
    """The schema file's exact text (2-space indent, UTF-8 kept, final newline)."""
    return json.dumps(export_schema(), indent=2, ensure_ascii=False) + "\n"


def default_path() -> Path:
    from orchestration import settings

    return settings.load().campaigns_dir / "schema.json"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="default: campaigns/schema.json")
    parser.add_argument("--check", action="store_true", help="fail if the file is not current")
    args = parser.parse_args(argv)
    path: Path = args.out or default_path()
    text = render_schema()
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is stale: run python -m orchestration.campaigns.schema", file=sys.stderr)
            return 1
        print(f"{path} is current")
        return 0
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
