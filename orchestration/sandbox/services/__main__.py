"""The background process behind ``omni sandbox up``: serve every local sandbox service."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from orchestration import settings as settings_module
from orchestration.sandbox.services.lifecycle import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestration.sandbox.services")
    parser.add_argument("--world", type=Path, help="world folder (default: $OMNI_HOME/world)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(settings_module.load(), args.world)


if __name__ == "__main__":
    main()
