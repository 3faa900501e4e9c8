"""Templates are bounded: a template cannot stop a validation, a preview or a dispatch run.

Issue 13: nested ``range(99999)`` loops and ``{{ "x" * 200000000 }}`` passed validation; the
loop's preview grew to 8 GiB and blocked every delivery. Validation now renders every template
with example data under the limits (:mod:`orchestration.campaigns.render_limits`) and refuses
what goes over them, naming file, line and campaign; at dispatch the same limits block only the
contact being rendered. Renders here use small time limits so the tests stay quick.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestration.campaigns import Campaign, example_context, load_all, load_campaign
from orchestration.campaigns.render_limits import (
    LIMITS,
    RenderLimits,
    RenderTimeout,
    run_with_deadline,
)
from orchestration.campaigns.templating import RenderError, render_contact
from orchestration.settings import REPO_ROOT

SHIPPED = REPO_ROOT / "campaigns"
HEADLINE = SHIPPED / "abandoned_cart_nearby_store.yml"
QUICK = RenderLimits(seconds=0.3)
NOTE = "    staff_note: >\n      "


def with_note(note: str) -> Campaign:
    """The headline campaign with its staff note replaced after validation (as a dispatch
    process could meet a template that skipped it)."""
    campaign = load_campaign(HEADLINE)
    assert campaign.channels.in_store is not None
    in_store = campaign.channels.in_store.model_copy(update={"staff_note": note})
    channels = campaign.channels.model_copy(update={"in_store": in_store})
    return campaign.model_copy(update={"channels": channels})


def render(campaign: Campaign, limits: RenderLimits = QUICK) -> object:
    customer, extra = example_context(campaign.trigger.type)
    return render_contact(campaign, customer, extra, limits=limits)


# --- validation refuses them, with file, line and campaign ------------------------------------


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
            "range() of 99,999 numbers is over the limit of 10,000",
        ),
        (
            "{% for i in range(9999) %}{% for j in range(9999) %}x{% endfor %}{% endfor %}",
            "loops ran more than the limit of 10,000 iterations in one rendering",
        ),
        ('{{ "x" * 200000000 }}', "a repeated text or list would be over the limit"),
    ],
)
def test_validation_refuses_a_runaway_template_naming_file_line_and_campaign(
    variant: Callable[..., Path],
    line_of: Callable[[Path, str], int],
    template: str,
    reason: str,
) -> None:
    path = variant("runaway", (NOTE, f"{NOTE}{template}\n      "))
    campaigns, errors = load_all(path.parent)
    assert campaigns == []
    (error,) = errors
    assert (error.file, error.field) == (path, "channels.in_store.staff_note")
    assert error.line == line_of(path, template)
    assert error.message.startswith("with example data: ") and reason in error.message
    assert error.allowed is not None and "10,000 times" in error.allowed


def test_validation_refuses_a_runaway_template_file(
    campaign_dir: Path, variant: Callable[..., Path]
) -> None:
    (campaign_dir / "templates" / "slow.txt").write_text(
        "Hola {{ customer.first_name }}, {{ offer.label }}\n"
        "{% for i in range(5000) %}{% for j in range(5000) %}.{% endfor %}{% endfor %}\n",
        encoding="utf-8",
    )
    path = variant(
        "slow_file",
        ("    text_template: abandoned_cart_nearby_store.txt", "    text_template: slow.txt"),
    )
    (error,) = load_all(path.parent)[1]
    assert error.file == path and error.field == "channels.email.text_template"
    assert error.message.startswith("templates/slow.txt line 2: with example data: loops ran")


def test_the_cli_names_the_runaway_template(
    variant: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orchestration import cli

    path = variant("runaway", (NOTE, f'{NOTE}{{{{ "x" * 200000000 }}}}\n      '))
    monkeypatch.setenv("OMNI_CAMPAIGNS_DIR", str(path.parent))
    assert cli.main(["campaigns", "validate"]) == 1
    error = capsys.readouterr().err
    assert "runaway.yml:" in error and "channels.in_store.staff_note" in error
    assert "over the limit" in error


# --- render time: every bound holds, and only that contact fails --------------------------------


@pytest.mark.parametrize(
    "template",
    [
        '{{ "x" * 200000000 }}',
        '{% set a = "x" * 400000 %}{{ a ~ a ~ a }}',
        '{% set a = "x" * 400000 %}{{ a + a }}',
        '{% set a = "x" * 400000 %}{{ [a, a, a, a] }}',
        '{% set a = "x" * 1000 %}{{ [a] * 100000 }}',
        '{% set ns = namespace(s="x") %}{% for i in range(60) %}'
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        '{{ "x" | center(1000000000) }}',
        '{{ ("x" * 1000) | replace("", "y" * 1000) }}',
        '{{ range(1000) | join("y" * 1000) }}',
        '{{ "x" | indent(1000000000) }}',
        '{{ "%999999999d" % 1 }}',
        '{{ ("%s" * 1000) | format(*(["y" * 1000] * 1000)) }}',
        '{{ ("x " * 100000) | wordwrap(1, wrapstring="y" * 1000) }}',
        "{{ 10 ** 100000000 }}",
        "{{ 1.5 | round(1000000000) }}",
        "{{ 2.5 | number(1000000000) }}",
        "{{ range(10) | batch(1000000000, 'x') | list }}",
        '{{ "x".ljust(1000000000) }}',
        '{{ "{:>999999999}".format(1) }}',
        '{{ (1).to_bytes(1000000000, "big") }}',
        "{{ lipsum(100000) }}",
        "{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}",  # 1,000,000 characters out
    ],
)
def test_every_way_to_grow_a_text_is_stopped_before_it_allocates(template: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(RenderError) as caught:
            render(with_note(template))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.field == ("channels", "in_store", "staff_note")
    assert peak < 20 * LIMITS.value_chars  # a few copies of the limit at most, never gigabytes


def test_a_template_that_runs_too_long_is_interrupted() -> None:
    """No bound on sizes or loops is hit (they are raised here), only the clock: the
    watchdog stops the rendering at the time limit."""
    patient = RenderLimits(seconds=0.3, loop_iterations=10**9, range_items=10**6)
    campaign = with_note(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(campaign, patient)
    assert time.monotonic() - started < 5  # stopped, not run to its end (hours)
    assert isinstance(caught.value.__cause__, RenderTimeout)
    assert caught.value.reason == "the template ran longer than the limit of 0.3 s"
    assert caught.value.field == ("channels", "in_store", "staff_note")
    assert caught.value.file == HEADLINE and caught.value.line is not None


def test_only_that_contact_fails_and_a_template_that_keeps_timing_out_is_skipped() -> None:
    patient = RenderLimits(seconds=0.2, loop_iterations=10**9, range_items=10**6)
    runaway = with_note(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        "{{ customer.customer_id }}"
    )
    healthy = load_campaign(HEADLINE)
    reasons = []
    for _ in range(5):
        with pytest.raises(RenderError) as caught:
            render(runaway, patient)
        reasons.append(caught.value.reason)
        assert render(healthy, patient) is not None  # the next contact renders as usual
    assert reasons[:3] == ["the template ran longer than the limit of 0.2 s"] * 3
    assert all(
        reason.startswith("not rendered: this template ran longer") for reason in reasons[3:]
    )


def test_a_deadline_never_fires_after_its_rendering() -> None:
    """Renderings ending right at their deadline either finish or raise RenderTimeout inside
    run_with_deadline: the interrupt never lands in the caller's code afterwards."""

    def busy() -> int:
        end = time.monotonic() + 0.03
        count = 0
        while time.monotonic() < end:
            count += 1
        return count

    outcomes = {"finished": 0, "timed out": 0}
    for _ in range(40):
        try:
            run_with_deadline(0.03, busy)
            outcomes["finished"] += 1
        except RenderTimeout:
            outcomes["timed out"] += 1
    settled = time.monotonic() + 0.3
    while time.monotonic() < settled:  # a stray interrupt would be raised in here
        sum(range(100))
    assert sum(outcomes.values()) == 40


def test_renderings_in_several_threads_each_get_their_own_deadline() -> None:
    patient = RenderLimits(seconds=0.3, loop_iterations=10**9, range_items=10**6)
    runaway = with_note(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    healthy = load_campaign(HEADLINE)
    results: dict[str, object] = {}

    def run(name: str, campaign: Campaign) -> None:
        try:
            results[name] = render(campaign, patient)
        except RenderError as error:
            results[name] = error

    threads = [
        threading.Thread(target=run, args=("runaway", runaway)),
        *(threading.Thread(target=run, args=(f"healthy{n}", healthy)) for n in range(3)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert isinstance(results["runaway"], RenderError)
    assert all(not isinstance(results[f"healthy{n}"], RenderError) for n in range(3))


def test_the_shipped_campaigns_render_well_within_the_limits() -> None:
    campaigns, errors = load_all(SHIPPED)
    assert errors == [] and len(campaigns) == 5
    for campaign in campaigns:
        contact = render(campaign, LIMITS)
        assert contact is not None
