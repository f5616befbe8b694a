"""Charts for the validation report, drawn as plain inline SVG.

No JavaScript charting library: the report is a record a lab keeps for inspectors (CAP, AABB)
and must open the same in ten years, offline, printed or on a locked-down PC, with nothing
fetched and no third-party code run inside a signed document. A few rectangles and lines do
that, and each bar carries a <title> with its exact figure (shown on hover, read by screen
readers); the tables next to the charts give the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from html import escape

BAR = "#2f6f9f"
ZERO = "#c0392b"  # a day with no message at all: an interface down?
GRID = "#d9dde3"
INK = "#1f2933"
MUTED = "#52606d"


def nice_ticks(top: int, count: int = 4) -> list[int]:
    """Round tick values from 0 to at least `top`: steps of 1, 2 or 5 times a power of ten,
    the finest that gives at most count + 1 intervals."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(
        int(m * power) for m in (1, 2, 5, 10, 20) if math.ceil(top / (m * power)) <= count + 1
    )
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _fmt(n: int) -> str:
    return f"{n:,}"


MAX_DAYS = 4000  # an axis of every day up to about eleven years


def continuous(by_day: Sequence[tuple[str, int]], max_days: int = MAX_DAYS) -> bool:
    """Whether daily_points gives every day (else only the days seen: a stray 1988 date)."""
    days = sorted(d for d, _ in by_day if d[:1].isdigit())
    try:
        span = date.fromisoformat(days[-1]) - date.fromisoformat(days[0]) if days else None
    except ValueError:
        return False
    return span is None or span.days <= max_days


def daily_points(
    by_day: Sequence[tuple[str, int]], max_days: int = MAX_DAYS
) -> list[tuple[str, int]]:
    """Every day from the first to the last, those without a message as 0 (a gap in a feed is
    what a validation must see); "unknown" and unreadable dates are left to the table."""
    known = {}
    for day, n in by_day:
        try:
            known[date.fromisoformat(day)] = n
        except ValueError:
            continue
    if not known:
        return []
    first, last = min(known), max(known)
    if (last - first).days > max_days:  # a stray 1900 or 2099 date: plot the days seen only
        return [(d.isoformat(), n) for d, n in sorted(known.items())]
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    return [(d.isoformat(), known.get(d, 0)) for d in days]


def gaps(points: Sequence[tuple[str, int]]) -> list[tuple[str, str, int]]:
    """Runs of days without a message in daily_points' output: (first, last, days), longest
    first."""
    found: list[tuple[str, str, int]] = []
    start: int | None = None
    for i, (_, n) in enumerate([*points, ("", 1)]):
        if n == 0 and start is None:
            start = i
        elif n != 0 and start is not None:
            found.append((points[start][0], points[i - 1][0], i - start))
            start = None
    return sorted(found, key=lambda g: -g[2])


def column_chart(points: Sequence[tuple[str, int]], *, label: str, width: int = 920,
                 height: int = 230) -> str:
    """Vertical bars, one per point (a day), labelled at most about 12 times along the axis."""
    if not points:
        return '<p class="empty">No dated messages.</p>'
    left, right, top_pad, bottom = 64, 12, 12, 42
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    peak = max(n for _, n in points)
    ticks = nice_ticks(peak)
    scale = plot_h / max(ticks[-1], 1)
    step = plot_w / len(points)
    bar_w = max(step * 0.8, 0.6)
    parts = [_svg_open(width, height, label)]
    for t in ticks:
        y = top_pad + plot_h - t * scale
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                     f'fill="{MUTED}">{_fmt(t)}</text>')
    every = max(1, math.ceil(len(points) / 12))
    for i, (name, n) in enumerate(points):
        x = left + i * step + (step - bar_w) / 2
        h = max(n * scale, 0.0)
        color = ZERO if n == 0 else BAR
        if n == 0:  # a zero day is drawn as a short red mark on the axis
            h = 3.0
        y = top_pad + plot_h - h
        parts.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{bar_w:.2f}" height="{h:.2f}" '
                     f'fill="{color}"><title>{escape(name)}: {_fmt(n)}</title></rect>')
        if i % every == 0:
            cx = left + i * step + step / 2
            parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{top_pad + plot_h}" '
                         f'y2="{top_pad + plot_h + 4}" stroke="{MUTED}"/>')
            parts.append(f'<text x="{cx:.1f}" y="{top_pad + plot_h + 18}" text-anchor="middle" '
                         f'fill="{MUTED}">{escape(name)}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top_pad + plot_h}" '
                 f'y2="{top_pad + plot_h}" stroke="{INK}"/>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(rows: Sequence[tuple[str, int]], *, label: str, width: int = 920) -> str:
    """Horizontal bars with their names on the left and their figures at their ends."""
    if not rows:
        return '<p class="empty">Nothing to show.</p>'
    row_h, name_w, right = 22, 250, 90
    height = row_h * len(rows) + 8
    plot_w = width - name_w - right
    peak = max(max(n for _, n in rows), 1)
    parts = [_svg_open(width, height, label)]
    for i, (name, n) in enumerate(rows):
        y = 4 + i * row_h
        w = n / peak * plot_w
        shown = name if len(name) <= 36 else name[:35] + "…"
        parts.append(f'<text x="{name_w - 8}" y="{y + 15}" text-anchor="end" '
                     f'fill="{INK}">{escape(shown)}</text>')
        parts.append(f'<rect x="{name_w}" y="{y + 3}" width="{max(w, 1 if n else 0):.1f}" '
                     f'height="{row_h - 7}" fill="{BAR}"><title>{escape(name)}: {_fmt(n)}'
                     f'</title></rect>')
        parts.append(f'<text x="{name_w + w + 6:.1f}" y="{y + 15}" fill="{INK}">{_fmt(n)}'
                     "</text>")
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(label)}" '
        'font-family="system-ui, sans-serif" font-size="11">'
        f"<title>{escape(label)}</title>"
    )
