"""Hand a checked audience to dispatch: one parquet file per campaign run, written once.

The campaign DAG's last task writes the contacts of its run to
``OMNI_HOME/outbox/<campaign_id>/<run_id>.parquet``: the treated ones and the held-out ones,
flagged ``is_holdout`` (measurement needs to know who was held out, and when they would have
been contacted). The dispatch ledger (``Ledger.record_handoff``) records treated rows as
contacts and holdout rows as ``holdouts``, which are never sent.

The file is written to a temporary name in the same folder and then linked to its final name,
so a reader never sees half a file, and a run that already handed off (a retry, a cleared task)
keeps its first file: the hand-off is idempotent per run, and dispatch cannot receive a run's
contacts twice with different content. The parquet metadata carries the campaign, the run and
the fingerprint of the checked audience.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from orchestration.settings import Settings

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class HandoffError(RuntimeError):
    """The audience cannot be handed off (it changed since it was checked)."""


def outbox_dir(cfg: Settings, campaign_id: str) -> Path:
    """Where the hand-off files of a campaign go."""
    return cfg.omni_home / "outbox" / campaign_id


def handoff_path(cfg: Settings, campaign_id: str, run_id: str) -> Path:
    """The hand-off file of one run (the run id made safe as a file name)."""
    safe = _UNSAFE.sub("_", run_id).strip("._") or "run"
    return outbox_dir(cfg, campaign_id) / f"{safe}.parquet"


def write_handoff(
    cfg: Settings,
    campaign_id: str,
    run_id: str,
    frame: pd.DataFrame,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``frame`` (the run's contacts) as the run's hand-off file; return its path.

    Atomic (temporary file, then a hard link to the final name) and idempotent: when the run
    already has its file, that file is kept as it is and its path returned.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = handoff_path(cfg, campaign_id, run_id)
    if path.exists():
        log.info("Run %s of %s was already handed off: %s (kept)", run_id, campaign_id, path)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    meta = {
        "campaign_id": campaign_id,
        "run_id": run_id,
        "written_at": datetime.now(UTC).isoformat(),
        "rows": str(len(frame)),
        **(metadata or {}),
    }
    existing = table.schema.metadata or {}
    table = table.replace_schema_metadata(
        {**existing, **{f"omni.{key}".encode(): value.encode() for key, value in meta.items()}}
    )
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, temporary)
        try:
            os.link(temporary, path)  # fails if another attempt got there first
        except FileExistsError:
            log.info(
                "Run %s of %s was handed off concurrently: %s (kept)", run_id, campaign_id, path
            )
    finally:
        temporary.unlink(missing_ok=True)
    return path


def read_handoff_metadata(path: Path) -> dict[str, str]:
    """The ``omni.*`` metadata of a hand-off file (campaign_id, run_id, rows, fingerprint...)."""
    import pyarrow.parquet as pq

    raw = pq.read_schema(path).metadata or {}
    return {
        key.decode().removeprefix("omni."): value.decode()
        for key, value in raw.items()
        if key.startswith(b"omni.")
    }


def hand_to_dispatch(
    cfg: Settings,
    campaign_id: str,
    run_id: str,
    checked: dict[str, Any],
    *,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Hand the run's contacts to dispatch (unless ``dry_run``); return the counts.

    The file holds the treated contacts and the holdout rows (``is_holdout`` true, never sent:
    the ledger records them apart). ``treated_contacts`` counts the treated rows only.

    ``checked`` is the summary of :func:`orchestration.quality.activation.check_audience`: the
    audience is read again (read-only) and must have the same fingerprint, so what is handed
    off is exactly what was checked (a warehouse rebuilt in between fails this task; a retry
    checks nothing new and fails again, so the run is re-run from its checks).
    """
    from orchestration.quality.activation import fingerprint, read_audience

    done = handoff_path(cfg, campaign_id, run_id)
    if not dry_run and done.exists():
        kept = read_handoff_metadata(done)
        log.info("Run %s of %s was already handed off: %s (kept)", run_id, campaign_id, done)
        return {
            "campaign_id": campaign_id,
            "run_id": run_id,
            "dry_run": False,
            "treated_contacts": int(kept.get("treated_rows", kept.get("rows", 0))),
            "path": str(done),
            "kept": True,
        }
    contacts = read_audience(cfg, campaign_id)
    found = fingerprint(contacts)
    if found != checked.get("fingerprint"):
        raise HandoffError(
            f"the audience of {campaign_id} changed since it was checked "
            f"(fingerprint {found} != {checked.get('fingerprint')}): clear the run from "
            "check_audience to check and hand off the new audience"
        )
    holdout = contacts["is_holdout"].fillna(False).astype(bool)
    handed = contacts.drop(columns=["consent_problem"], errors="ignore").assign(is_holdout=holdout)
    treated = handed[~holdout]
    by_channel = {
        str(channel): int(count) for channel, count in treated.groupby("channel").size().items()
    }
    held_out = contacts[holdout][["customer_id", "trigger_key"]].drop_duplicates()
    result: dict[str, Any] = {
        "campaign_id": campaign_id,
        "run_id": run_id,
        "dry_run": dry_run,
        "treated_contacts": len(treated),
        "treated_by_channel": by_channel,
        "holdout_decisions": len(held_out),
        "holdout_contacts": int(holdout.sum()),
        "path": None,
    }
    if dry_run:
        log.info("Dry run of %s: nothing handed to dispatch. %s", campaign_id, _counts(result))
        return result
    meta = {
        "fingerprint": found,
        "treated_rows": str(len(treated)),
        "holdout_rows": str(result["holdout_contacts"]),
    }
    path = write_handoff(cfg, campaign_id, run_id, handed, meta)
    result["path"] = str(path)
    log.info("Handed %s to dispatch: %s. %s", campaign_id, path, _counts(result))
    return result


def _counts(result: dict[str, Any]) -> str:
    channels = ", ".join(
        f"{name} {count:,}" for name, count in result["treated_by_channel"].items()
    )
    return (
        f"{result['treated_contacts']:,} treated contacts ({channels or 'none'}); "
        f"holdout {result['holdout_decisions']:,} decisions "
        f"({result['holdout_contacts']:,} contacts)"
    )


__all__ = [
    "HandoffError",
    "hand_to_dispatch",
    "handoff_path",
    "outbox_dir",
    "read_handoff_metadata",
    "write_handoff",
]
