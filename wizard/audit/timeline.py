"""Pure functions behind the history pages: time spent per stage, and a progress chart as SVG."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape


@dataclass(frozen=True)
class Stage:
    name: str
    started: datetime
    seconds: float
    current: bool


def stage_durations(changes: list[tuple[datetime, str]], now: datetime, final: bool) -> list[Stage]:
    """One row per stage, in order: each lasts until the next change (the last, until now unless final)."""
    stages: list[Stage] = []
    for i, (at, name) in enumerate(changes):
        last = i == len(changes) - 1
        end = now if last else changes[i + 1][0]
        if last and final:
            stages.append(Stage(name, at, 0.0, False))
        else:
            stages.append(Stage(name, at, max(0.0, (end - at).total_seconds()), last))
    return stages


def progress_svg(points: list[tuple[datetime, int]], width: int = 480, height: int = 120) -> str:
    """A small line chart of Progress (0-100) over time, as inline SVG markup."""
    pad = 24
    if not points:
        return ""
    t0 = points[0][0]
    span = max((points[-1][0] - t0).total_seconds(), 1.0)
    coords = [
        (pad + (at - t0).total_seconds() / span * (width - 2 * pad), height - pad - p / 100 * (height - 2 * pad))
        for at, p in points
    ]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(coords))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5"/>' for x, y in coords)
    label = escape(f"Progress from {points[0][1]}% to {points[-1][1]}% over {span:.0f} s")
    return (
        f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" class="axis"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" class="axis"/>'
        f'<text x="2" y="{pad + 4}">100</text><text x="8" y="{height - pad + 4}">0</text>'
        f'<text x="{width - pad}" y="{height - 6}" text-anchor="end">{span:.0f} s</text>'
        f'<path d="{path}" class="line"/>{dots}</svg>'
    )
