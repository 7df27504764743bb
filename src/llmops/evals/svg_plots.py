"""Small inline SVG plots for the HTML report: a histogram, a scatter plot and a
confusion matrix.

Hand-drawn so the report needs no plotting library and stays one self-contained file. Every label
is escaped; numbers are formatted, never taken from user text raw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

WIDTH = 360
HEIGHT = 220
# Plot area margins: left leaves room for y tick labels, bottom for x tick labels and the x label.
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 26, 40
_MAX_POINTS = 2000
_BAR_FILL = "#4c78a8"
_POINT_FILL = "#f58518"


@dataclass(frozen=True)
class _Axis:
    """Maps data values in ``[low, high]`` to pixels in ``[start, end]``."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)


def _span(values: Sequence[float]) -> tuple[float, float]:
    low, high = float(min(values)), float(max(values))
    if math.isclose(low, high):
        pad = abs(low) * 0.1 or 0.5
        return low - pad, high + pad
    return low, high


def _tick(value: float) -> str:
    return f"{value:.3g}"


def _frame(title: str, x_label: str, y_label: str, body: list[str], x: _Axis, y: _Axis) -> str:
    bottom, left = HEIGHT - _BOTTOM, _LEFT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f'<text x="{WIDTH / 2:.1f}" y="16" text-anchor="middle" font-size="12">{escape(title)}</text>',
        *body,
        f'<line x1="{left}" y1="{bottom}" x2="{WIDTH - _RIGHT}" y2="{bottom}" stroke="#333"/>',
        f'<line x1="{left}" y1="{_TOP}" x2="{left}" y2="{bottom}" stroke="#333"/>',
        f'<text x="{left}" y="{bottom + 14}" font-size="10" text-anchor="start">{_tick(x.low)}</text>',
        f'<text x="{WIDTH - _RIGHT}" y="{bottom + 14}" font-size="10" '
        f'text-anchor="end">{_tick(x.high)}</text>',
        f'<text x="{left - 4}" y="{bottom}" font-size="10" text-anchor="end">{_tick(y.low)}</text>',
        f'<text x="{left - 4}" y="{_TOP + 8}" font-size="10" text-anchor="end">{_tick(y.high)}</text>',
        f'<text x="{(left + WIDTH - _RIGHT) / 2:.1f}" y="{HEIGHT - 6}" font-size="11" '
        f'text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="12" y="{(_TOP + bottom) / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(_TOP + bottom) / 2:.1f})">{escape(y_label)}</text>',
        "</svg>",
    ]
    return "\n".join(parts)


def empty_svg(title: str, message: str = "no data") -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" '
        f'font-size="12">{escape(title)}: {escape(message)}</text></svg>'
    )


def histogram_svg(values: Sequence[float], *, title: str, x_label: str = "score", bins: int = 20) -> str:
    """Distribution of ``values``; a pass/fail metric gets two bars."""
    finite = [float(v) for v in values if math.isfinite(v)]
    if not finite:
        return empty_svg(title)
    low, high = _span(finite)
    if set(finite) <= {0.0, 1.0}:
        bins, low, high = 2, 0.0, 1.0
    counts, edges = np.histogram(finite, bins=bins, range=(low, high))
    x = _Axis(low, high, _LEFT, WIDTH - _RIGHT)
    y = _Axis(0.0, float(max(counts.max(), 1)), HEIGHT - _BOTTOM, _TOP)
    body = []
    for count, left_edge, right_edge in zip(counts.tolist(), edges[:-1], edges[1:], strict=True):
        if count == 0:
            continue
        x0, x1, top = x(float(left_edge)), x(float(right_edge)), y(float(count))
        body.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{top:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
            f'height="{y.start - top:.1f}" fill="{_BAR_FILL}"><title>{count}</title></rect>'
        )
    return _frame(title, x_label, "examples", body, x, y)


def scatter_svg(xs: Sequence[float], ys: Sequence[float], *, title: str, x_label: str, y_label: str) -> str:
    """``ys`` against ``xs`` (at most a few thousand points, evenly thinned)."""
    points = [
        (float(a), float(b)) for a, b in zip(xs, ys, strict=True) if math.isfinite(a) and math.isfinite(b)
    ]
    if not points:
        return empty_svg(title)
    step = max(1, math.ceil(len(points) / _MAX_POINTS))
    points = points[::step]
    x_low, x_high = _span([p[0] for p in points])
    y_low, y_high = _span([p[1] for p in points])
    x = _Axis(x_low, x_high, _LEFT, WIDTH - _RIGHT)
    y = _Axis(y_low, y_high, HEIGHT - _BOTTOM, _TOP)
    body = [
        f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.5" fill="{_POINT_FILL}" fill-opacity="0.6"/>'
        for a, b in points
    ]
    return _frame(title, x_label, y_label, body, x, y)


def confusion_svg(labels: Sequence[str], counts: Sequence[Sequence[int]], *, title: str) -> str:
    """A confusion matrix as a heat map: rows are references, columns predictions (the last column
    is predictions naming no label); each cell shows its count, darker for more."""
    columns = [*labels, "(none)"]
    cell, left, top = 28, 150, 40
    width = left + cell * len(columns) + 12
    height = top + cell * len(labels) + 150
    peak = max((value for row in counts for value in row), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="12">{escape(title)}</text>',
        f'<text x="{left - 6}" y="{top - 8}" font-size="10" text-anchor="end">reference \\ prediction</text>',
    ]
    for r, row in enumerate(counts):
        y = top + r * cell
        parts.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.1f}" font-size="10" text-anchor="end">'
            f"{escape(_short(labels[r]))}</text>"
        )
        for c, value in enumerate(row):
            x = left + c * cell
            shade = value / peak
            fill = f"rgba(76,120,168,{shade:.3f})"
            ink = "#fff" if shade > 0.5 else "#333"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#ccc"/>'
                f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" font-size="10" '
                f'text-anchor="middle" fill="{ink}">{int(value)}</text>'
            )
    base = top + cell * len(labels) + 6
    for c, name in enumerate(columns):
        cx = left + c * cell + cell / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{base}" font-size="10" text-anchor="end" '
            f'transform="rotate(-60 {cx:.1f} {base})">{escape(_short(name))}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
