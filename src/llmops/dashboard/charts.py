"""Charts drawn on the server as SVG: time series (lines, one per series) and bars.

The markup uses presentation attributes only (no ``style``), so the strict CSP holds; every label
is escaped. Each chart carries ``data-points`` (how many values it draws) so tests and readers can
tell an empty chart from a drawn one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 34
COLOURS = ("#1f4e79", "#c55a11", "#2e7d32", "#7b1fa2", "#a4262c", "#00838f")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]


def _ticks(low: float, high: float) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / 4 for i in range(5)]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _open(label: str, points: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" data-points="{points}">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]


def _empty(label: str) -> Markup:
    parts = _open(label, 0)
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#5b6673" font-size="13">'
        "no data yet</text></svg>"
    )
    return Markup("".join(parts))


def _axes(parts: list[str], low: float, high: float, x_labels: Sequence[str], y: object) -> None:
    plot_w = WIDTH - LEFT - RIGHT
    for tick in _ticks(low, high):
        ty = y(tick)  # type: ignore[operator]
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e3e7eb"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" font-size="11" fill="#5b6673">'
            f"{escape(_fmt(tick))}</text>"
        )
    if x_labels:
        step = max(1, len(x_labels) // 6)
        last = len(x_labels) - 1
        for i in range(0, len(x_labels), step):
            tx = LEFT + plot_w * (i / max(1, last))
            anchor = "start" if i == 0 else ("end" if i == last else "middle")  # the ends stay inside
            parts.append(
                f'<text x="{tx:.1f}" y="{HEIGHT - 12}" text-anchor="{anchor}" font-size="11" fill="#5b6673">'
                f"{escape(x_labels[i])}</text>"
            )


def line_chart(label: str, x_labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """One line per series over shared x labels; a None value breaks its line."""
    values = [v for s in series for v in s.values if v is not None]
    if not values:
        return _empty(label)
    low, high = min(0.0, min(values)), max(values) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = max(1, max(len(s.values) for s in series) - 1)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - (v - low) / ((high - low) or 1.0))

    parts = _open(label, len(values))
    _axes(parts, low, high, x_labels, y)
    for index, item in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        runs: list[list[str]] = [[]]
        for i, value in enumerate(item.values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append(f"{LEFT + plot_w * i / count:.1f},{y(value):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
            elif run:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(run)}"/>'
                )
        parts.append(  # the legend: one line per series, top right
            f'<text x="{WIDTH - RIGHT - 4}" y="{TOP + 10 + 13 * index}" text-anchor="end" font-size="11" '
            f'fill="{colour}">{escape(item.name[:48])} ■</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(label: str, bars: Sequence[tuple[str, float]], *, high: float | None = None) -> Markup:
    """Horizontal bars, one per (name, value); ``high`` fixes the scale (1.0 for shares)."""
    if not bars:
        return _empty(label)
    top = high or max(v for _, v in bars) or 1.0
    row = 22
    height = TOP + row * len(bars) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(label)}" data-points="{len(bars)}">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    name_w, plot_w = 200, WIDTH - 200 - 80
    for i, (name, value) in enumerate(bars):
        y = TOP + row * i
        width = max(0.0, plot_w * value / top)
        parts.append(
            f'<text x="{name_w - 8}" y="{y + 14}" text-anchor="end" font-size="12" fill="#1d232b">'
            f"{escape(name[:32])}</text>"
        )
        parts.append(
            f'<rect x="{name_w}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" fill="{COLOURS[0]}"/>'
        )
        parts.append(
            f'<text x="{name_w + width + 6:.1f}" y="{y + 14}" font-size="11" fill="#5b6673">'
            f"{escape(_fmt(value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
