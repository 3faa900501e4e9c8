"""The durable memory of the write APIs (SendGrid, loyalty, store): append-only JSONL files.

The read APIs serve the world; the write APIs (mail sends, cashback credits, in-store offers)
must remember what they accepted, so tests and the demo can read it back and so an
idempotency key still holds after ``omni sandbox down`` / ``up``. Each service keeps its
records in memory and appends every change as one JSON line to
``$OMNI_HOME/sandbox/<service>_<what>.jsonl`` when it serves the configured world (``omni
sandbox up``, or ``running`` on ``$OMNI_HOME/world``); otherwise it keeps memory only.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from orchestration import settings as settings_module
from orchestration.sandbox.services.world_db import World

log = logging.getLogger(__name__)


def state_dir_for(world: World) -> Path | None:
    """The sandbox state dir when the service serves the configured world, else None."""
    cfg = settings_module.load()
    if Path(world.world_dir).resolve() == cfg.world_dir.resolve():
        return cfg.sandbox_dir
    return None


class Journal:
    """An append-only JSONL file (or nothing when ``path`` is None); thread-safe appends."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def replay(self) -> list[dict[str, Any]]:
        """Every record written so far (a torn last line from a crash is skipped)."""
        if self.path is None or not self.path.exists():
            return []
        records = []
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                log.warning("%s line %d is not JSON (a torn write?): skipped", self.path, number)
        return records

    def append(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        line = json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line)
                out.flush()

    def clear(self) -> None:
        """Forget everything (``DELETE /_sandbox/state``)."""
        if self.path is None:
            return
        with self._lock:
            self.path.unlink(missing_ok=True)
