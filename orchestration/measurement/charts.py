"""Inline SVG charts for the self-contained report: no JavaScript, nothing downloaded.

Each function returns one ``<figure>`` holding an ``<svg class="chart" data-chart="<id>">``
with a ``<title>``, a visible title, axis labels, one ``class="mark"`` element per data item
(a campaign's interval, a bar, a matrix cell) and a ``<figcaption>``. Marks carry their data in
``data-*`` attributes so a browser test can count and read them. Styling comes from the
report's inline CSS (class names only here). Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 960
LABEL_WIDTH = 300  # left margin for the row labels
RIGHT_MARGIN = 250  # room for the value / "not significant" notes
ROW_HEIGHT = 28
TOP = 44  # title
BOTTOM = 52  # x axis ticks and label

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Interval:
    """One row of a forest plot: an estimate with its 95 % interval."""

    label: str
    estimate: float | None  # None: not measurable (for example no holdout)
    low: float | None
    high: float | None
    is_significant: bool
    is_small_sample: bool


@dataclass(frozen=True)
class Bar:
    """One bar; ``value`` None is drawn as "n/a" (for example ROI without cost)."""

    label: str
    value: float | None
    note: str = ""
    is_muted: bool = False


def percent(value: float) -> str:
    return f"{value * 100:+.1f} pp" if value else "0"


def ratio(value: float) -> str:
    return f"{value * 100:.0f} %"


def euros(value: float) -> str:
    return f"{value:,.0f} EUR"


def plain(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first, 12)]
    while ticks[-1] < high - step * 1e-9:  # the last tick is at or beyond high
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


class _Scale:
    """Linear map from data values to x pixels of the plot area."""

    def __init__(self, values: Sequence[float], left: float, right: float) -> None:
        low = min([0.0, *values])
        high = max([0.0, *values])
        if high == low:
            high = low + 1.0
        self.ticks = nice_ticks(low, high)
        self.low, self.high = self.ticks[0], self.ticks[-1]
        self.left, self.right = left, right

    def __call__(self, value: float) -> float:
        share = (value - self.low) / (self.high - self.low)
        return round(self.left + share * (self.right - self.left), 2)


def _open(chart_id: str, title: str, height: float) -> list[str]:
    title_id = f"chart-{escape(chart_id)}-title"
    return [
        f'<svg class="chart" data-chart="{escape(chart_id)}" role="img" '
        f'aria-labelledby="{title_id}" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'width="{WIDTH}" height="{height:.0f}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{title_id}">{escape(title)}</title>',
        f'<text class="chart-title" x="{LABEL_WIDTH}" y="22">{escape(title)}</text>',
    ]


def _x_axis(scale: _Scale, y: float, label: str, fmt: Formatter) -> list[str]:
    parts = [
        f'<g class="axis x-axis"><line x1="{scale.left}" x2="{scale.right}" y1="{y}" y2="{y}"/>'
    ]
    for tick in scale.ticks:
        x = scale(tick)
        parts.append(
            f'<line class="tick" x1="{x}" x2="{x}" y1="{y}" y2="{y + 5}"/>'
            f'<text class="tick-label" x="{x}" y="{y + 18}" text-anchor="middle">'
            f"{escape(fmt(tick))}</text>"
        )
    middle = (scale.left + scale.right) / 2
    parts.append(
        f'<text class="axis-label x-label" x="{middle}" y="{y + 40}" '
        f'text-anchor="middle">{escape(label)}</text></g>'
    )
    return parts


def _y_label(label: str, top: float, bottom: float) -> str:
    middle = (top + bottom) / 2
    return (
        f'<text class="axis-label y-label" x="14" y="{middle}" text-anchor="middle" '
        f'transform="rotate(-90 14 {middle})">{escape(label)}</text>'
    )


def _row_label(text: str, y: float) -> str:
    shown = text if len(text) <= 42 else text[:41] + "…"
    return (
        f'<text class="row-label" x="{LABEL_WIDTH - 10}" y="{y + 4}" text-anchor="end">'
        f"<title>{escape(text)}</title>{escape(shown)}</text>"
    )


def _figure(svg: list[str], caption: str) -> str:
    return (
        '<figure class="chart-figure">'
        + "".join(svg)
        + "</svg>"
        + f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def forest_plot(
    chart_id: str,
    title: str,
    intervals: Sequence[Interval],
    *,
    x_label: str,
    y_label: str,
    caption: str,
    fmt: Formatter = percent,
) -> str:
    """Estimates with 95 % intervals, one row each, around a zero line.

    A significant estimate is a filled dot; a non-significant one a hollow dot with the note
    "not significant" (and "small sample" when the groups are too small to say anything).
    """
    height = TOP + ROW_HEIGHT * len(intervals) + BOTTOM
    values = [
        value
        for interval in intervals
        for value in (interval.estimate, interval.low, interval.high)
        if value is not None
    ]
    scale = _Scale(values, LABEL_WIDTH, WIDTH - RIGHT_MARGIN)
    plot_bottom = TOP + ROW_HEIGHT * len(intervals)
    svg = _open(chart_id, title, height)
    zero = scale(0.0)
    svg.append(
        f'<line class="zero-line" x1="{zero}" x2="{zero}" y1="{TOP - 6}" y2="{plot_bottom}"/>'
    )
    for index, interval in enumerate(intervals):
        y = TOP + ROW_HEIGHT * index + ROW_HEIGHT / 2
        state = "significant" if interval.is_significant else "not-significant"
        note = "" if interval.is_significant else "not significant"
        if interval.is_small_sample:
            note = "small sample, not significant"
        svg.append(
            f'<g class="mark interval {state}" data-label="{escape(interval.label)}" '
            f'data-estimate="{_attr(interval.estimate)}" data-low="{_attr(interval.low)}" '
            f'data-high="{_attr(interval.high)}" '
            f'data-significant="{str(interval.is_significant).lower()}" '
            f'data-small-sample="{str(interval.is_small_sample).lower()}">'
        )
        svg.append(_row_label(interval.label, y))
        if interval.low is not None and interval.high is not None:
            low, high = scale(interval.low), scale(interval.high)
            svg.append(
                f'<line class="whisker" x1="{low}" x2="{high}" y1="{y}" y2="{y}"/>'
                f'<line class="whisker-end" x1="{low}" x2="{low}" y1="{y - 5}" y2="{y + 5}"/>'
                f'<line class="whisker-end" x1="{high}" x2="{high}" y1="{y - 5}" y2="{y + 5}"/>'
            )
        if interval.estimate is None:
            text = "n/a (not measurable)"
        else:
            svg.append(
                f'<circle class="point" cx="{scale(interval.estimate)}" cy="{y}" r="5">'
                f"<title>{escape(_interval_text(interval, fmt))}</title></circle>"
            )
            text = fmt(interval.estimate) + (f" · {note}" if note else "")
        svg.append(
            f'<text class="value-label" x="{WIDTH - RIGHT_MARGIN + 8}" y="{y + 4}">'
            f"{escape(text)}</text></g>"
        )
    svg.extend(_x_axis(scale, plot_bottom + 4, x_label, fmt))
    svg.append(_y_label(y_label, TOP, plot_bottom))
    return _figure(svg, caption)


def _interval_text(interval: Interval, fmt: Formatter) -> str:
    if interval.estimate is None:
        return f"{interval.label}: not measurable"
    if interval.low is None or interval.high is None:
        return f"{interval.label}: {fmt(interval.estimate)} (no interval)"
    return (
        f"{interval.label}: {fmt(interval.estimate)} "
        f"(95 % CI {fmt(interval.low)} to {fmt(interval.high)})"
    )


def _attr(value: float | None) -> str:
    return "" if value is None else str(value)


def bar_chart(
    chart_id: str,
    title: str,
    bars: Sequence[Bar],
    *,
    x_label: str,
    y_label: str,
    caption: str,
    fmt: Formatter = plain,
) -> str:
    """Horizontal bars from a zero baseline (negative values extend to the left)."""
    height = TOP + ROW_HEIGHT * len(bars) + BOTTOM
    values = [bar.value for bar in bars if bar.value is not None]
    scale = _Scale(values, LABEL_WIDTH, WIDTH - RIGHT_MARGIN)
    plot_bottom = TOP + ROW_HEIGHT * len(bars)
    zero = scale(0.0)
    svg = _open(chart_id, title, height)
    for index, bar in enumerate(bars):
        top = TOP + ROW_HEIGHT * index + 5
        y = top + (ROW_HEIGHT - 10) / 2
        muted = " muted" if bar.is_muted else ""
        svg.append(
            f'<g class="mark bar{muted}" data-label="{escape(bar.label)}" '
            f'data-value="{_attr(bar.value)}">'
        )
        svg.append(_row_label(bar.label, y))
        text = "n/a" if bar.value is None else fmt(bar.value)
        if bar.value is not None:
            end = scale(bar.value)
            x, width = min(zero, end), max(abs(end - zero), 1.0)
            negative = " negative" if bar.value < 0 else ""
            svg.append(
                f'<rect class="bar-rect{negative}" x="{x}" y="{top}" width="{width}" '
                f'height="{ROW_HEIGHT - 10}"><title>{escape(bar.label)}: {escape(text)}'
                "</title></rect>"
            )
        if bar.note:
            text += f" · {bar.note}"
        svg.append(
            f'<text class="value-label" x="{WIDTH - RIGHT_MARGIN + 8}" y="{y + 4}">'
            f"{escape(text)}</text></g>"
        )
    svg.append(
        f'<line class="zero-line" x1="{zero}" x2="{zero}" y1="{TOP - 6}" y2="{plot_bottom}"/>'
    )
    svg.extend(_x_axis(scale, plot_bottom + 4, x_label, fmt))
    svg.append(_y_label(y_label, TOP, plot_bottom))
    return _figure(svg, caption)


def matrix_chart(
    chart_id: str,
    title: str,
    row_names: Sequence[str],
    column_names: Sequence[str],
    values: Mapping[tuple[str, str], float],
    *,
    x_label: str,
    y_label: str,
    caption: str,
    fmt: Formatter = plain,
    maximum: float | None = None,
) -> str:
    """A rows x columns matrix (darker = larger), one mark per cell that has a value.

    Used for from -> to counts (``maximum`` None: the largest count is darkest) and for scores
    on a fixed scale (``maximum`` 100). A cell without a value is drawn empty.
    """
    cell_width = min(110.0, (WIDTH - LABEL_WIDTH - 20) / max(len(column_names), 1))
    height = TOP + 24 + ROW_HEIGHT * len(row_names) + BOTTOM
    most = maximum or max(values.values(), default=0) or 1
    grid_top = TOP + 24
    svg = _open(chart_id, title, height)
    for column, name in enumerate(column_names):
        x = LABEL_WIDTH + cell_width * column + cell_width / 2
        svg.append(
            f'<text class="tick-label column-label" x="{x:.1f}" y="{grid_top - 8}" '
            f'text-anchor="middle">{escape(name)}</text>'
        )
    for row, row_name in enumerate(row_names):
        y = grid_top + ROW_HEIGHT * row
        svg.append(_row_label(row_name, y + ROW_HEIGHT / 2))
        for column, column_name in enumerate(column_names):
            value = values.get((row_name, column_name))
            x = LABEL_WIDTH + cell_width * column
            shade = 0.0 if value is None else max(0.0, min(1.0, value / most))
            svg.append(
                f'<rect class="cell" x="{x:.1f}" y="{y}" width="{cell_width - 2:.1f}" '
                f'height="{ROW_HEIGHT - 2}" fill-opacity="{0.06 + 0.8 * shade:.2f}"/>'
            )
            if value is None:
                continue
            svg.append(
                f'<g class="mark cell-mark" data-from="{escape(row_name)}" '
                f'data-to="{escape(column_name)}" data-value="{value}">'
                f'<text class="cell-label" x="{x + cell_width / 2:.1f}" '
                f'y="{y + ROW_HEIGHT / 2 + 3}" text-anchor="middle">{escape(fmt(value))}'
                f"<title>{escape(row_name)} / {escape(column_name)}: {escape(fmt(value))}</title>"
                "</text></g>"
            )
    grid_bottom = grid_top + ROW_HEIGHT * len(row_names)
    middle = LABEL_WIDTH + cell_width * len(column_names) / 2
    svg.append(
        f'<text class="axis-label x-label" x="{middle:.1f}" y="{grid_bottom + 30}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    svg.append(_y_label(y_label, grid_top, grid_bottom))
    return _figure(svg, caption)
