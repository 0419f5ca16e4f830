"""Charts as inline SVG, drawn on the server: no script, no file from anywhere else.

Each drawn number carries ``data-figure``, ``data-key`` and ``data-value`` naming the summary
figure it shows (the ``figure,key,value`` of the CSV form), so a reader, a test or a screen
reader can tie it back to ``GET /v1/metrics/summary``. Every label is escaped: agency codes
and other text typed by partners never become markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 640
ROW = 28
LABEL = 190
VALUE_SPACE = 120
PALETTE = ("#1f5fa8", "#e08a1e", "#3b9c5a", "#b8453a", "#7a5ba6", "#5a7d8c")


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    figure: str  # the summary figure, e.g. "received_by_channel"
    key: str  # its key, e.g. "complaint_post"; "" for a top-level figure
    shown: str | None = None  # the text drawn; the value itself when None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _attrs(figure: str, key: str, value: float | str) -> str:
    return (f'data-figure="{escape(figure)}" data-key="{escape(key)}" '
            f'data-value="{escape(str(value))}"')


def _svg(height: int, title: str, body: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
            f"<title>{escape(title)}</title>{body}</svg>")


def bars(title: str, items: Sequence[Bar], *, empty: str = "none in the period") -> str:
    """Horizontal bars, longest first as given, each with its label and number."""
    if not items:
        return f'<p class="empty">{escape(empty)}</p>'
    top = max(item.value for item in items) or 1
    span = WIDTH - LABEL - VALUE_SPACE
    parts = []
    for index, item in enumerate(items):
        y = index * ROW
        length = max(item.value / top * span, 1 if item.value else 0)
        shown = item.shown if item.shown is not None else _number(item.value)
        parts.append(
            f'<text x="{LABEL - 8}" y="{y + 18}" text-anchor="end" class="label">'
            f"{escape(_clip(item.label))}</text>"
            f'<rect x="{LABEL}" y="{y + 5}" width="{length:.1f}" height="{ROW - 10}" '
            f'fill="{PALETTE[0]}"/>'
            f'<text x="{LABEL + length + 6:.1f}" y="{y + 18}" class="value" '
            f'{_attrs(item.figure, item.key, item.value)}>{escape(shown)}</text>')
    return _svg(len(items) * ROW + 4, title, "".join(parts))


def columns(title: str, items: Sequence[Bar]) -> str:
    """Vertical columns (months), the number above each and its label below."""
    if not items:
        return '<p class="empty">no month in the period</p>'
    height, base, top_space = 220, 190, 22
    top = max(item.value for item in items) or 1
    step = (WIDTH - 20) / len(items)
    width = min(step * 0.7, 60)
    parts = [f'<line x1="10" y1="{base}" x2="{WIDTH - 10}" y2="{base}" class="axis"/>']
    for index, item in enumerate(items):
        x = 10 + index * step + (step - width) / 2
        length = item.value / top * (base - top_space)
        centre = x + width / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{base - length:.1f}" width="{width:.1f}" '
            f'height="{length:.1f}" fill="{PALETTE[0]}"/>'
            f'<text x="{centre:.1f}" y="{base - length - 5:.1f}" text-anchor="middle" '
            f'class="value" {_attrs(item.figure, item.key, item.value)}>'
            f"{escape(_number(item.value))}</text>"
            f'<text x="{centre:.1f}" y="{base + 18}" text-anchor="middle" class="label">'
            f"{escape(item.label)}</text>")
    return _svg(height, title, "".join(parts))


@dataclass(frozen=True)
class Goal:
    """One row of "closures against target": the actual split in parts, and the target."""

    label: str
    parts: Sequence[Bar]  # stacked, e.g. closures by stage
    target: Bar | None  # None when no target is set for the period
    rate: Bar | None


def against_target(title: str, goals: Sequence[Goal]) -> str:
    """Stacked bars of what was done, with the target as a marker and the rate beside it."""
    height = len(goals) * 64 + 30
    top = max([sum(p.value for p in g.parts) for g in goals]
              + [g.target.value for g in goals if g.target] + [1])
    span = WIDTH - LABEL - 40
    parts: list[str] = []
    for index, goal in enumerate(goals):
        y = index * 64
        x = float(LABEL)
        parts.append(f'<text x="{LABEL - 8}" y="{y + 22}" text-anchor="end" class="label">'
                     f"{escape(goal.label)}</text>")
        for colour, part in enumerate(goal.parts):
            length = part.value / top * span
            if length <= 0:
                continue
            parts.append(f'<rect x="{x:.1f}" y="{y + 8}" width="{length:.1f}" height="20" '
                         f'fill="{PALETTE[colour % len(PALETTE)]}"><title>'
                         f"{escape(part.label)}: {escape(_number(part.value))}</title></rect>")
            x += length
        done = sum(p.value for p in goal.parts)
        line = [f"done {_number(done)}"]
        if goal.target is not None:
            marker = LABEL + goal.target.value / top * span
            parts.append(f'<line x1="{marker:.1f}" y1="{y + 2}" x2="{marker:.1f}" '
                         f'y2="{y + 34}" class="target"/>')
            target = _attrs(goal.target.figure, goal.target.key, goal.target.value)
            line.append(f"target <tspan {target}>{escape(_number(goal.target.value))}</tspan>")
        else:
            line.append("no target set")
        if goal.rate is not None:
            line.append(f'<tspan {_attrs(goal.rate.figure, goal.rate.key, goal.rate.value)}>'
                        f"{escape(goal.rate.shown or _number(goal.rate.value))}</tspan>")
        parts.append(f'<text x="{LABEL}" y="{y + 50}" class="note">{" · ".join(line)}</text>')
    legend = "".join(
        f'<rect x="{LABEL + i * 130}" y="{height - 18}" width="12" height="12" '
        f'fill="{PALETTE[i % len(PALETTE)]}"/><text x="{LABEL + i * 130 + 16}" '
        f'y="{height - 8}" class="label">{escape(part.label)} '
        f'<tspan {_attrs(part.figure, part.key, part.value)}>'
        f"{escape(_number(part.value))}</tspan></text>"
        for i, part in enumerate(goals[0].parts)) if goals and goals[0].parts else ""
    return _svg(height, title, "".join(parts) + legend)


def _clip(label: str, limit: int = 28) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
