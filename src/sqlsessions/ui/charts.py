"""Charts as plain geometry (bars, ticks, labels) for the SVG templates: no JavaScript.

Values are laid out here; `templates/_chart.html` turns a `Chart` into SVG markup with
Jinja2's autoescaping, so an agent id or function name is always text in the drawing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
WIDTH = 760
HEIGHT = 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 40


@dataclass(frozen=True)
class Bar:
    """A rectangle with its hover text."""

    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Label:
    """A piece of text placed on the chart."""

    x: float
    y: float
    text: str
    anchor: str = "middle"


@dataclass
class Chart:
    """One chart: its bars, axis labels and legend; `bars` is empty when there is no data."""

    name: str
    title: str
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    gridlines: list[float] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)


def _tick_step(largest: int, ticks: int = 4) -> int:
    """A readable whole-number gap between `ticks` gridlines that reach at least `largest`."""
    target = max(1.0, largest / ticks)
    scale = 1
    while True:
        for factor in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
            step = factor * scale
            if step >= target and step == int(step):
                return int(step)
        scale *= 10


def _colors(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def daily_stacked(
    name: str, title: str, rows: list[dict[str, Any]], value: str, days: int = 30
) -> Chart:
    """Bars per UTC day (the last `days` days that have data), stacked per agent."""
    chart = Chart(name, title)
    per_day: defaultdict[date, dict[str, int]] = defaultdict(dict)
    for row in rows:
        per_day[row["day"]][row["agent_id"] or "(no agent)"] = int(row[value])
    shown_days = sorted(per_day)[-days:]
    if not shown_days:
        return chart
    agents = sorted({agent for day in shown_days for agent in per_day[day]})
    colors = _colors(agents)
    chart.legend = [(colors[agent], agent) for agent in agents]
    step = _tick_step(max(sum(per_day[day].values()) for day in shown_days))
    top = step * 4
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / len(shown_days)
    bar_width = max(2.0, slot * 0.7)
    for tick in range(5):
        y = TOP + plot_height - plot_height * tick / 4
        chart.gridlines.append(y)
        chart.labels.append(Label(LEFT - 6, y + 4, str(step * tick), "end"))
    label_every = max(1, len(shown_days) // 8)
    for i, day in enumerate(shown_days):
        x = LEFT + i * slot + (slot - bar_width) / 2
        base = float(TOP + plot_height)
        for agent in agents:
            amount = per_day[day].get(agent, 0)
            if not amount:
                continue
            height = plot_height * amount / top
            base -= height
            hover = f"{day.isoformat()} {agent}: {amount} {value}"
            chart.bars.append(Bar(x, base, bar_width, height, colors[agent], hover))
        if i % label_every == 0:
            chart.labels.append(
                Label(x + bar_width / 2, HEIGHT - BOTTOM + 16, day.strftime("%m-%d"))
            )
    return chart


def ranked_bars(name: str, title: str, totals: dict[str, int], limit: int = 15) -> Chart:
    """Horizontal bars, largest first (at most `limit`), e.g. tool calls per function."""
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
    row_height = 24
    chart = Chart(name, title, height=TOP + BOTTOM // 2 + row_height * max(1, len(ranked)))
    if not ranked:
        return chart
    label_width = 180
    plot_width = WIDTH - label_width - RIGHT - 60
    top = max(amount for _, amount in ranked)
    for i, (label, amount) in enumerate(ranked):
        y = TOP + i * row_height
        width = max(1.0, plot_width * amount / top)
        color = PALETTE[0]
        chart.bars.append(Bar(label_width, y, width, row_height - 6, color, f"{label}: {amount}"))
        shown = label if len(label) <= 26 else label[:25] + "…"
        chart.labels.append(Label(label_width - 8, y + row_height / 2 + 1, shown, "end"))
        chart.labels.append(
            Label(label_width + width + 6, y + row_height / 2 + 1, str(amount), "start")
        )
    return chart
