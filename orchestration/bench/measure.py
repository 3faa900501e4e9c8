"""Run one command as a child process and measure it: wall seconds, CPU seconds, peak memory."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Measured:
    stdout: str
    seconds: float
    cpu_seconds: float
    peak_mib: float


def run_measured(command: list[str], env: dict[str, str] | None = None) -> Measured:
    """Run ``command``; the peak is the child's own maximum resident set (Linux: KiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
    return Measured(
        stdout=output,
        seconds=round(time.perf_counter() - started, 2),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime, 1),
        peak_mib=round(usage.ru_maxrss / 1024, 1),
    )
