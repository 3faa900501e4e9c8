"""The sandbox services: local HTTP look-alikes of the shop, POS and social APIs.

They serve the simulated world (``orchestration.sandbox.world``) in the shapes of
``docs/sandbox-api.md`` section 2, with auth, paging, update-time filters and fault injection.

Public API (used by the CLI, the connectors' tests and the end-to-end tests):

- ``up(cfg, foreground=False) -> dict`` / ``down(cfg) -> dict``: one background process.
- ``reload_if_running(cfg) -> None``: re-read the world after ``world.advance``.
- ``running(world_dir, names=("shop", "pos", "social"))``: context manager serving in threads
  on free ports, yielding ``{name: base_url}`` (tests).
- ``export_bulk(world_dir) -> dict``: the shop's JSONL bulk files under ``world/bulk/``.
"""

from orchestration.sandbox.services.lifecycle import (
    down,
    export_bulk,
    reload_if_running,
    running,
    up,
)
from orchestration.sandbox.services.registry import SERVICES

__all__ = ["SERVICES", "down", "export_bulk", "reload_if_running", "running", "up"]
