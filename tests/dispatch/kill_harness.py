"""Dispatcher processes for the kill test, and the exact points they may die at (a test
harness, never imported by the product).

:func:`start` runs ``omni dispatch run`` in a new process forked from a multiprocessing
*forkserver* that has imported the dispatcher once (a fresh process each time, without the
seconds of imports a new interpreter pays). The process logs to a file. It may be killed from
outside (the test's timer sends SIGKILL) or at an exact point: the N-th time it passes its
phase's point it writes ``KILL-POINT PHASE N WHEN`` to its log and SIGKILLs itself (nothing is
flushed or cleaned up either way). The points:

``prepare``
    after the N-th ledger step of the preparation returns: a stale recovery (one per channel)
    or a hand-off file recorded (before the file is remembered as recorded);
``email``
    ``before``: the N-th SendGrid request is about to leave (its contacts are ``sending``);
    ``after``: its answer has arrived and is not recorded yet;
``loyalty_cashback`` / ``in_store``
    the same for the N-th request to the loyalty / store API;
``staff_sheets``
    before the N-th staff sheet file is written.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

PATHS = {"loyalty_cashback": "/v1/members/", "in_store": "/v1/stores/"}
PRELOAD = [
    "orchestration.cli",
    "orchestration.dispatch.run",
    "orchestration.dispatch.email",
    "orchestration.dispatch.email_events",
    "orchestration.dispatch.cashback",
    "orchestration.dispatch.in_store",
    "orchestration.dispatch.offer_check",
    "orchestration.dispatch.staff_sheets",
    "orchestration.campaigns",
    "duckdb",
    "pandas",
    "pyarrow.parquet",
    "sendgrid",
    "kill_harness",
]


class Point:
    def __init__(self, phase: str, number: int, when: str) -> None:
        self.phase, self.number, self.when = phase, number, when
        self.count = 0
        self.lock = threading.Lock()

    def tick(self) -> None:
        with self.lock:
            self.count += 1
            if self.count != self.number:
                return
        sys.stderr.write(f"KILL-POINT {self.phase} {self.number} {self.when}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def around(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if self.when == "before":
                self.tick()
            result = function(*args, **kwargs)
            if self.when == "after":
                self.tick()
            return result

        return wrapped


def install(point: Point) -> None:
    from orchestration.dispatch import email, http, ledger, staff_sheets

    if point.phase == "prepare":
        point.when = "after"
        ledger.Ledger.recover_stale = point.around(ledger.Ledger.recover_stale)  # type: ignore[method-assign]
        ledger.Ledger.record_handoff = point.around(ledger.Ledger.record_handoff)  # type: ignore[method-assign]
    elif point.phase == "email":
        email.send_request = point.around(email.send_request)
    elif point.phase in PATHS:
        original = http._TimeoutSession.request
        counted = point.around(original)
        path = PATHS[point.phase]

        def request(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            chosen = counted if path in str(url) else original
            return chosen(self, method, url, *args, **kwargs)

        http._TimeoutSession.request = request  # type: ignore[method-assign]
    elif point.phase == "staff_sheets":
        point.when = "before"
        staff_sheets._write_if_changed = point.around(staff_sheets._write_if_changed)
    else:
        raise ValueError(f"unknown phase {point.phase!r}")


def _dispatcher(
    argv: Sequence[str], env: Mapping[str, str], log: str, point: tuple[str, int, str] | None
) -> None:
    """The body of one dispatcher process: its environment, its log, its kill point, then
    ``omni`` with ``argv``; the exit code is the process's."""
    os.environ.clear()
    os.environ.update(env)
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if point is not None:
        install(Point(*point))
    from orchestration.cli import main

    code = main(list(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_CONTEXT: Any = None


def start(argv: Sequence[str], log: Path, point: tuple[str, int, str] | None = None) -> BaseProcess:
    """Start one dispatcher process (see the module); it appends its output to ``log``."""
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    process = _CONTEXT.Process(
        target=_dispatcher, args=(list(argv), dict(os.environ), str(log), point), daemon=True
    )
    process.start()
    return process
