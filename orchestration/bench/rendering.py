"""Benchmark of the campaign renderer under its limits: what the bounds cost, what they stop.

1. Bounded rendering of every shipped campaign with example data (all channels of a contact):
   CPU microseconds per contact and contacts per second, one process (dispatch renders each
   contact like this).
2. The cost of the wall-clock deadline alone (arming and disarming the watchdog).
3. The issue-13 templates (nested ``range(99999)`` loops, ``"x" * 200000000``) and a loop that
   only the clock stops: seconds until refused and peak memory (tracemalloc).

``python -m orchestration.bench.rendering``; one JSON line per result.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from typing import Any

CONTACTS = 5_000
RUNAWAY = {
    "nested range(99999) loops": (
        "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"
    ),
    "nested range(9999) loops": (
        "{% for i in range(9999) %}{% for j in range(9999) %}x{% endfor %}{% endfor %}"
    ),
    '"x" * 200000000': '{{ "x" * 200000000 }}',
    "a loop only the clock stops (1 s)": (
        "{% for i in range(10000) %}{{ ('x' * 400000) | replace('x', 'y') | length }}{% endfor %}"
    ),
}


def _print(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def run() -> None:
    from orchestration import settings
    from orchestration.campaigns import example_context, load_all, render_contact
    from orchestration.campaigns.render_limits import LIMITS, run_with_deadline
    from orchestration.campaigns.templating import RenderError

    campaigns, _ = load_all(settings.REPO_ROOT / "campaigns")
    work = [(campaign, *example_context(campaign.trigger.type)) for campaign in campaigns]
    for campaign, customer, extra in work:
        render_contact(campaign, customer, extra)  # compile once
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(CONTACTS // len(work)):
            for campaign, customer, extra in work:
                render_contact(campaign, customer, extra)
        best = min(best, (time.process_time() - started) / CONTACTS)
    _print(
        {
            "benchmark": "bounded render, every channel of a contact",
            "campaigns": len(work),
            "cpu_us_per_contact": round(best * 1e6),
            "contacts_per_second": round(1 / best),
        }
    )

    calls = 100_000
    started = time.process_time()
    for _ in range(calls):
        run_with_deadline(LIMITS.seconds, lambda: None)
    _print(
        {
            "benchmark": "wall-clock deadline (arm + disarm)",
            "cpu_us_per_render": round((time.process_time() - started) / calls * 1e6, 2),
        }
    )

    headline = next(campaign for campaign, _, _ in work if campaign.id.startswith("abandoned"))
    customer, extra = example_context(headline.trigger.type)
    in_store = headline.channels.in_store
    assert in_store is not None
    for name, template in RUNAWAY.items():
        channels = headline.channels.model_copy(
            update={"in_store": in_store.model_copy(update={"staff_note": template})}
        )
        campaign = headline.model_copy(update={"channels": channels})
        tracemalloc.start()
        started = time.perf_counter()
        try:
            render_contact(campaign, customer, extra)
            outcome = "rendered"
        except RenderError as error:
            outcome = error.reason
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        _print(
            {
                "benchmark": f"runaway template: {name}",
                "seconds": round(seconds, 3),
                "peak_mib": round(peak / 2**20, 1),
                "outcome": outcome,
            }
        )


if __name__ == "__main__":
    run()
