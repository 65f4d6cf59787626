"""Geometry of the health report's two inline SVG charts: plain dicts of coordinates and labels
that ``templates/health_report.html`` draws, so that every number a chart shows can be checked
without a browser.

* :func:`metric_chart`: the champion's live metric per day of the month with its baseline and
  retrain limit (dashed), and a vertical line on each day with a decision (promotion,
  rollback, retrain...);
* :func:`drift_chart`: the drifted share of features per day as bars (red on a drift alarm)
  with the config's dataset-drift share as a dashed line.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from retrain_lib.tools.health_report import DayHealth

WIDTH, LEFT, RIGHT = 720, 56, 16
# Day marker kind -> (label, colour), most telling first: a day's line has the colour of its first kind here
MARKERS = {
    "rollback": ("rollback", "#d62728"),
    "rollout_rollback": ("rollout withdrawn", "#e377c2"),
    "promotion": ("promotion", "#2ca02c"),
    "challenger": ("challenger", "#17becf"),
    "gate_failure": ("gate failure", "#e8590c"),
    "rejected": ("rejected", "#e8590c"),
    "no_gain": ("no gain", "#7f7f7f"),
    "retrain": ("retrain", "#1f77b4"),
}


def _x_axis(n: int, plot_w: float) -> tuple[Callable[[int], float], float]:
    """``x(i)``: the centre of day ``i`` of ``n``, and the width of a day's band."""
    band = plot_w / max(n, 1)
    return (lambda i: LEFT + band * (i + 0.5)), band


def _xlabels(days: Sequence[DayHealth], x: Callable[[int], float]) -> list[dict[str, Any]]:
    """The 1st, 5th, 10th... day of the month and its last under the axis (``MM-DD``)."""
    n = len(days)
    return [
        {"x": round(x(i), 1), "label": d.day[5:]}
        for i, d in enumerate(days)
        if i == 0 or (i + 1) % 5 == 0 or i == n - 1
    ]


def _polyline(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in points)


def metric_chart(days: Sequence[DayHealth], metric: str | None, *, height: int = 230) -> dict[str, Any]:
    """The live metric per day (``days``: one :class:`DayHealth` per day of the month)."""
    plot_w = WIDTH - LEFT - RIGHT
    kinds = {d.day: min(d.events, key=_rank) for d in days if d.events}
    legend = _legend(set(kinds.values()), plot_w)
    rows = 1 + legend[-1]["row"]
    height += 13 * (rows - 1)  # the legend's rows go below the day labels
    top, bottom = 28, height - 26 - 13 * rows
    plot_h = bottom - top
    x, _band = _x_axis(len(days), plot_w)
    values = [v for d in days for v in (d.live, d.baseline, d.limit) if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad

    def y(v: float) -> float:
        return bottom - plot_h * (v - lo) / (hi - lo)

    def line(key: str) -> str:
        return _polyline([(x(i), y(getattr(d, key))) for i, d in enumerate(days) if getattr(d, key) is not None])

    markers = []
    for i, d in enumerate(days):
        if d.day in kinds:
            color = MARKERS.get(kinds[d.day], (kinds[d.day], "#444"))[1]
            names = ", ".join(MARKERS.get(e, (e, ""))[0] for e in d.events)
            markers.append({"x": round(x(i), 1), "day": d.day, "kind": kinds[d.day], "color": color, "label": names})
    return {
        "title": f"live {metric or 'metric'} per day",
        "metric": metric or "metric",
        "width": WIDTH,
        "height": height,
        "left": LEFT,
        "right": LEFT + plot_w,
        "top": top,
        "bottom": bottom,
        "grid": [{"y": round(y(lo + (hi - lo) * k / 4), 1), "label": f"{lo + (hi - lo) * k / 4:.3g}"} for k in range(5)]
        if values
        else [],
        "xlabels": _xlabels(days, x),
        "live": line("live"),
        "baseline": line("baseline"),
        "limit": line("limit"),
        "points": [
            {"x": round(x(i), 1), "y": round(y(d.live), 1), "day": d.day, "value": d.live}
            for i, d in enumerate(days)
            if d.live is not None
        ],
        "markers": markers,
        "legend": [{**item, "y": bottom + 30 + 13 * item["row"]} for item in legend],
        "empty": not any(d.live is not None for d in days),
    }


def _rank(kind: str) -> int:
    return list(MARKERS).index(kind) if kind in MARKERS else len(MARKERS)


def _legend(kinds: set[str], plot_w: float) -> list[dict[str, Any]]:
    """The lines of the chart, then the marker kinds the month's days show, left to right in
    rows as wide as the plot (``row`` 0, 1...)."""
    items = [("live", "#1f77b4", ""), ("baseline", "#7f7f7f", "1 3"), ("retrain limit", "#d62728", "4 3")]
    items += [(label, color, "3 2") for kind, (label, color) in MARKERS.items() if kind in kinds]
    out, lx, row = [], float(LEFT), 0
    for label, color, dash in items:
        width = 24 + 6 * len(label)
        if lx + width > LEFT + plot_w and lx > LEFT:
            lx, row = float(LEFT), row + 1
        out.append({"x": lx, "row": row, "label": label, "color": color, "dash": dash})
        lx += width
    return out


def drift_chart(days: Sequence[DayHealth], threshold: float | None, *, height: int = 150) -> dict[str, Any]:
    """The drifted share of features per checked day as bars, alarms in red."""
    top, bottom = 28, height - 26
    plot_w, plot_h = WIDTH - LEFT - RIGHT, bottom - top
    x, band = _x_axis(len(days), plot_w)

    def y(v: float) -> float:
        return bottom - plot_h * min(max(v, 0.0), 1.0)

    bars = []
    for i, d in enumerate(days):
        if d.drifted_share is None:
            continue
        h = max(bottom - y(d.drifted_share), 1.0)  # a checked day without drift: a hairline
        bars.append(
            {
                "x": round(x(i) - band * 0.35, 1),
                "y": round(bottom - h, 1),
                "width": round(max(band * 0.7, 1.0), 1),
                "height": round(h, 1),
                "day": d.day,
                "value": d.drifted_share,
                "alarm": d.drift_alarm,
            }
        )
    return {
        "title": "drifted share of features per day",
        "width": WIDTH,
        "height": height,
        "left": LEFT,
        "right": LEFT + plot_w,
        "top": top,
        "bottom": bottom,
        "grid": [{"y": round(y(v), 1), "label": f"{v:.0%}"} for v in (0.0, 0.5, 1.0)],
        "xlabels": _xlabels(days, x),
        "bars": bars,
        "threshold": None if threshold is None else {"y": round(y(threshold), 1), "label": f"{threshold:.0%}"},
        "empty": not bars,
    }
