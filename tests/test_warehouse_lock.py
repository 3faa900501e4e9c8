"""Readers never break a build, and two builds never run at once (issue 13, item 7).

Real processes on a private ``OMNI_HOME``: a writer holding the warehouse lock makes a reader
and a second writer wait with a message naming it; a writer that cannot wait long enough fails
with that message and changes nothing; a killed writer leaves no stale lock. Then the real
thing: ``omni dbt build`` running while ``omni customer`` and a second ``omni dbt build`` start;
all three succeed, one after the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from orchestration import settings
from orchestration.campaigns import load_all
from orchestration.campaigns.publish import publish_configs

OMNI = Path(sys.executable).with_name("omni")


def environment(home: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "OMNI_HOME": str(home), **more}


def python(home: Path, code: str, **more: str) -> subprocess.Popen[str]:
    """A Python process running ``code`` (with ``cfg`` and ``warehouse`` imported)."""
    prelude = "from orchestration import settings, warehouse\ncfg = settings.load()\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=environment(home, **more),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_held(home: Path, what: str, process: subprocess.Popen[str]) -> None:
    """Until the lock file names ``what`` as its writer (the writer is at work)."""
    deadline = time.monotonic() + 120
    lock = home / "warehouse.lock"
    while time.monotonic() < deadline:
        if lock.exists() and what in lock.read_text(encoding="utf-8"):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{what} never took the lock")


HOLD = """
import sys, time
with warehouse.writing(cfg, "{what}"):
    time.sleep({seconds})
    print("released", time.time(), flush=True)
"""
READ = """
import time
with warehouse.reading(cfg, "{what}"):
    print("reading", time.time(), flush=True)
"""


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def test_a_reader_and_a_second_writer_wait_for_the_writer(tmp_path: Path) -> None:
    first = python(tmp_path, HOLD.format(what="first writer", seconds=2))
    wait_until_held(tmp_path, "first writer", first)
    reader = python(tmp_path, READ.format(what="a reader"))
    second = python(tmp_path, HOLD.format(what="second writer", seconds=0))
    first_code, first_out, _ = finished(first)
    reader_code, reader_out, reader_err = finished(reader)
    second_code, second_out, second_err = finished(second)
    assert (first_code, reader_code, second_code) == (0, 0, 0)
    released = float(first_out.split()[1])
    assert float(reader_out.split()[1]) >= released  # it read after the writer, not during
    assert float(second_out.split()[1]) >= released
    for err, who in ((reader_err, "a reader"), (second_err, "second writer")):
        assert f"{who}: waiting for the warehouse: first writer (pid {first.pid}" in err


def test_a_writer_that_cannot_wait_fails_clearly_and_the_first_one_goes_on(
    tmp_path: Path,
) -> None:
    first = python(tmp_path, HOLD.format(what="omni dbt build", seconds=2))
    wait_until_held(tmp_path, "omni dbt build", first)
    impatient = python(
        tmp_path, HOLD.format(what="impatient", seconds=0), OMNI_WAREHOUSE_LOCK_WAIT="0.5"
    )
    code, out, err = finished(impatient)
    assert code != 0 and "released" not in out
    assert "WarehouseBusy: impatient: the warehouse is still busy after " in err
    assert f"s: omni dbt build (pid {first.pid}, writing since " in err
    assert "Nothing was changed; try again when it has finished" in err
    assert finished(first)[0] == 0


def test_readers_share_and_a_writer_waits_for_them(tmp_path: Path) -> None:
    slow_read = """
    import time
    with warehouse.reading(cfg, "slow reader"):
        open(cfg.omni_home / "reading", "w").close()
        time.sleep(2)
        print("done", time.time(), flush=True)
    """
    reader = python(tmp_path, slow_read)
    deadline = time.monotonic() + 60
    while not (tmp_path / "reading").exists():
        assert time.monotonic() < deadline and reader.poll() is None
        time.sleep(0.05)
    other = python(tmp_path, READ.format(what="another reader"), OMNI_WAREHOUSE_LOCK_WAIT="0.5")
    writer = python(tmp_path, HOLD.format(what="writer", seconds=0))
    other_code, _, other_err = finished(other)
    assert other_code == 0 and "waiting" not in other_err  # readers do not wait for readers
    reader_code, reader_out, _ = finished(reader)
    writer_code, writer_out, writer_err = finished(writer)
    assert (reader_code, writer_code) == (0, 0)
    assert float(writer_out.split()[1]) >= float(reader_out.split()[1])
    assert "writer: waiting for the warehouse: readers of the warehouse" in writer_err


def test_a_killed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    first = python(tmp_path, HOLD.format(what="doomed", seconds=600))
    wait_until_held(tmp_path, "doomed", first)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    after = python(tmp_path, HOLD.format(what="next", seconds=0), OMNI_WAREHOUSE_LOCK_WAIT="5")
    code, out, err = finished(after)
    assert code == 0 and "released" in out, err


def _small_warehouse(home: Path) -> None:
    """The published campaigns (what stg_config__campaigns reads) and one customer."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMNI_HOME", str(home))
        cfg = settings.load()
        campaigns, errors = load_all(settings.REPO_ROOT / "campaigns")
        assert not errors
        publish_configs(cfg, campaigns)
        with duckdb.connect(str(cfg.warehouse_path)) as con:
            con.execute("create schema marts")
            con.execute("create schema intermediate")
            con.execute(
                "create table marts.dim_customers as "
                "select 'C1' as customer_id, 'Ana' as first_name, 'Gil' as last_name"
            )
            con.execute(
                "create table intermediate.int_customers_unified as select 'C1' as customer_id, "
                "'shop' as source_system, '1' as source_record_id, 'shop:1' as record_key, "
                "'shop:1' as customer_key, 'ana@example.com' as email_normalized, "
                "null as phone_normalized, null as social_handle, 'Ana' as first_name, "
                "'Gil' as last_name, now() as updated_at"
            )


def omni(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(OMNI), *args],
        env=environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def build(home: Path, name: str) -> subprocess.Popen[str]:
    target = home / f"target-{name}"
    return omni(
        home,
        "dbt",
        "build",
        "--select",
        "stg_config__campaigns",
        "--target-path",
        str(target),
        "--log-path",
        str(target / "logs"),
    )


@pytest.mark.slow
def test_a_reader_and_a_second_build_during_a_dbt_build(tmp_path: Path) -> None:
    home = tmp_path / "omni"
    _small_warehouse(home)
    first = build(home, "first")
    wait_until_held(home, "dbt build", first)
    reader = omni(home, "customer", "C1", "--json")
    second = build(home, "second")
    first_code, first_out, first_err = finished(first)
    reader_code, reader_out, reader_err = finished(reader)
    second_code, second_out, second_err = finished(second)
    assert first_code == 0, first_out[-3000:] + first_err[-3000:]
    assert reader_code == 0, reader_err[-3000:]
    assert '"customer_id": "C1"' in reader_out
    assert second_code == 0, second_out[-3000:] + second_err[-3000:]
    waiting = f"waiting for the warehouse: dbt build (pid {first.pid}"
    assert f"omni customer: {waiting}" in reader_err
    assert f"dbt build: {waiting}" in second_err
    assert "Completed successfully" in first_out and "Completed successfully" in second_out


def test_the_cosmos_dbt_tasks_take_the_lock_for_their_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's dbt tasks (Cosmos) hold the writer lock from ``pre_execute`` to
    ``post_execute``: a CLI writer meanwhile waits, then goes."""
    from orchestration import warehouse

    monkeypatch.setenv("OMNI_HOME", str(tmp_path))
    cfg = settings.load()
    warehouse.ensure_manifest(cfg)
    operator_args = warehouse.cosmos_task_group_args(cfg)["operator_args"]

    class Task:
        task_id = "dbt.stg_shop__orders_run"

    operator_args["pre_execute"]({"task": Task()})
    try:
        impatient = python(
            tmp_path, HOLD.format(what="cli", seconds=0), OMNI_WAREHOUSE_LOCK_WAIT="0.5"
        )
        code, _, err = finished(impatient)
        assert code != 0
        assert "busy after" in err and "Airflow task dbt.stg_shop__orders_run" in err
    finally:
        operator_args["post_execute"]({"task": Task()}, None)
    code, out, err = finished(python(tmp_path, HOLD.format(what="cli", seconds=0)))
    assert code == 0 and "released" in out, err
