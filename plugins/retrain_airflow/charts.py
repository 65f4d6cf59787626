"""Geometry of the fleet page's inline SVG charts: plain dicts of coordinates and labels that
the templates under ``templates/`` draw (``_charts.html``). No drawing and no HTML here, so
every number a chart shows can be checked without a browser.

* :func:`line_chart`: one polyline per series over day labels (drift share, per-feature
  scores), dashed threshold lines (fixed, or each series' own threshold per day), optionally
  on a p-value (log) axis;
* :func:`timeline_chart`: the champion's live metric per day with its baseline and retrain
  limit, a marker per retrain, promotion, rollback and rejection, and the drifted share per
  day as bars in a panel below, both on one calendar axis;
* :func:`threshold_bar`: a drift score as a bar relative to its threshold.

Standard library only: the plugin manager imports every file under ``plugins/`` in every
Airflow process.
"""

from __future__ import annotations

import math
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# Marker kinds of the timeline (see retrain_lib.tools.status_timeline.MARKER_EVENTS), in legend order:
# kind -> (label, colour, shape)
MARKERS = {
    "retrain": ("retrain", "#1f77b4", "triangle"),
    "promote": ("promotion", "#2ca02c", "circle"),
    "challenger": ("challenger", "#17becf", "diamond"),
    "rollback": ("rollback", "#d62728", "triangle-down"),
    "rejected": ("rejected", "#e8590c", "cross"),
    "no_gain": ("no gain", "#7f7f7f", "square"),
    "throttled": ("throttled", "#6f42c1", "ring"),  # a retrain request held back (from the check itself)
}
BAR_WIDTH = 100  # px of a threshold bar; the threshold sits in the middle
LABEL_GAP = 11  # px: threshold labels closer than this share one label (font size 10)
P_FLOOR_DECADES = 2.0  # a p-value axis shows at least this many decades past the threshold


def _fmt(value: float, *, percent: bool = False) -> str:
    return f"{value:.0%}" if percent else f"{value:.3g}"


def _short_day(label: str) -> str:
    return label[5:] if len(label) == 10 and label[4] == "-" else label


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    return [lo + (hi - lo) * k / count for k in range(count + 1)]


def _polyline_segments(points: list[tuple[float, float] | None]) -> list[str]:
    """SVG ``points`` strings of the runs of consecutive points (a missing day breaks the line)."""
    runs, current = [], []
    for p in [*points, None]:
        if p is None:
            if len(current) > 1:
                runs.append(" ".join(f"{x:.1f},{y:.1f}" for x, y in current))
            current = []
        else:
            current.append(p)
    return runs


def _day_labels(labels: list[str], x, *, every: int) -> list[dict[str, Any]]:
    """Every ``every``-th day's label (and the last day's) under the x axis."""
    n = len(labels)
    return [
        {"x": round(x(i), 1), "label": _short_day(lab)} for i, lab in enumerate(labels) if i % every == 0 or i == n - 1
    ]


def line_chart(
    labels: list[str],
    series: dict[str, list[float | None]],
    *,
    title: str,
    ymax: float | None = None,
    thresholds: list[float] | tuple = (),
    threshold_series: dict[str, list[float | None]] | None = None,
    percent: bool = False,
    p_values: bool = False,
    width: int = 560,
    height: int = 190,
) -> dict[str, Any]:
    """One polyline per series over ``labels``.

    ``p_values``: the values are p-values, drawn as ``-log10(p)`` (up = more drift) with the
    axis labelled in p-values and cut at :data:`P_FLOOR_DECADES` decades below the smallest
    threshold (smaller p-values sit on the top edge, flagged ``clipped``). ``thresholds`` are
    drawn as dashed lines; ``threshold_series`` (series name -> its threshold per day, e.g. a
    calibrated drift threshold that changes with the sample size) as a dashed line in that
    series' colour. Threshold labels that would overlap are merged into one range label. A
    ``height`` under 80 is a sparkline: no axes, labels or legend.
    """
    compact = height < 80
    legend = [] if compact or len(series) < 2 else list(series)
    legend_rows = 0
    if legend:
        legend_rows = 1 + sum(6 * len(n) + 18 for n in legend) // (width - 60)
    left, right, top, bottom = (3, 3, 3, 3) if compact else (46, 22, 22, 22 + 13 * legend_rows)
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(labels)

    def tr(v: float | None) -> float | None:
        if v is None:
            return None
        if p_values:
            return -math.log10(min(max(v, 1e-300), 1.0))
        return v

    def usable(t: float | None) -> bool:
        return t is not None and (not p_values or 0 < t < 1)

    values = [tr(v) for vs in series.values() for v in vs if v is not None]
    fixed = [tr(t) for t in thresholds if usable(t)]
    per_day = {name: [tr(t) if usable(t) else None for t in ts] for name, ts in (threshold_series or {}).items()}
    lines = fixed + [t for ts in per_day.values() for t in ts if t is not None]
    if ymax is not None:
        top_value = ymax
    elif p_values:
        top_value = max([*lines, 1.0]) + P_FLOOR_DECADES if lines else max([*values, 1.0])
    else:
        top_value = max([*values, *lines, 1e-9]) * 1.1

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * min(max(v / top_value, 0.0), 1.0)

    def label(v: float) -> str:
        return f"1e-{v:.0f}" if p_values and v >= 1 else ("1" if p_values else _fmt(v, percent=percent))

    if p_values:  # whole decades
        step_decades = max(1, math.ceil(top_value / 5))
        ticks = [float(k) for k in range(0, int(top_value) + 1, step_decades)]
    else:
        ticks = _ticks(0.0, top_value)
    grid = [] if compact else [{"y": round(y(v), 1), "label": label(v)} for v in ticks]
    xlabels = [] if compact else _day_labels(labels, x, every=max(1, n // 6))
    out_series = [
        _series_geometry(idx, name, vs, labels, x, y, tr, top_value) for idx, (name, vs) in enumerate(series.items())
    ]
    legend_items = _legend_items(legend, left=left, right=right, width=width, y=top + plot_h + 30)
    return {
        "title": title,
        "width": width,
        "height": height,
        "compact": compact,
        "left": left,
        "right": left + plot_w,
        "top": top,
        "bottom": top + plot_h,
        "grid": grid,
        "xlabels": xlabels,
        **_threshold_geometry(fixed, per_day, list(series), x, y, p_values=p_values, percent=percent),
        "series": out_series,
        "legend": legend_items,
    }


def _threshold_geometry(
    fixed: list[float], per_day: dict[str, list[float | None]], names: list[str], x, y, *, p_values: bool, percent: bool
) -> dict[str, list[dict[str, Any]]]:
    """The threshold labels and the per-day threshold lines of a line chart (chart scale in)."""
    return {
        "thresholds": _threshold_labels(
            fixed + [ts[-1] for ts in per_day.values() if ts and ts[-1] is not None],
            y,
            (lambda t: 10**-t) if p_values else (lambda t: t),
            percent=percent and not p_values,
            lines=not per_day,
        ),
        "threshold_lines": _threshold_lines(per_day, names, x, y),
    }


def _threshold_lines(per_day: dict[str, list[float | None]], names: list[str], x, y) -> list[dict[str, Any]]:
    """Each series' threshold per day (on the chart's scale) as a dashed line in its colour."""
    out = []
    for name, ts in per_day.items():
        if name not in names:
            continue
        segments = _polyline_segments([None if t is None else (x(i), y(t)) for i, t in enumerate(ts)])
        if segments:
            out.append({"name": name, "color": PALETTE[names.index(name) % len(PALETTE)], "segments": segments})
    return out


def _threshold_labels(values: list[float], y, real, *, percent: bool, lines: bool) -> list[dict[str, Any]]:
    """One label per distinct threshold (``values`` on the chart's scale, ``real`` turns one
    back into the threshold), from the top down; a threshold whose label would overlap the one
    above joins it as a range ("thresholds 0.0042-0.0086"). With ``lines`` (fixed thresholds)
    each label's ``line`` is true: draw a full-width dashed line at each y of its ``lines``;
    per-day thresholds are drawn by :func:`_threshold_lines` instead."""
    groups: list[list[float]] = []
    for v in sorted({round(v, 12) for v in values}, reverse=True):
        if groups and y(v) - y(groups[-1][0]) < LABEL_GAP:
            groups[-1].append(v)
        else:
            groups.append([v])
    out = []
    for g in groups:
        shown = sorted({_fmt(real(v), percent=percent): real(v) for v in g}.items(), key=lambda kv: kv[1])
        text = f"threshold {shown[0][0]}" if len(shown) == 1 else f"thresholds {shown[0][0]}-{shown[-1][0]}"
        out.append({"y": round(y(g[0]), 1), "label": text, "line": lines, "lines": [round(y(v), 1) for v in g]})
    return out


def _series_geometry(idx: int, name: str, vs: list, labels: list[str], x, y, tr, top_value: float) -> dict[str, Any]:
    """One series of a line chart: its polyline runs and a dot per day with a value."""
    pts = [None if tr(v) is None else (x(i), y(tr(v))) for i, v in enumerate(vs)]
    dots = [
        {
            "x": round(p[0], 1),
            "y": round(p[1], 1),
            "day": labels[i],
            "value": vs[i],
            "clipped": tr(vs[i]) > top_value,
        }
        for i, p in enumerate(pts)
        if p is not None
    ]
    return {"name": name, "color": PALETTE[idx % len(PALETTE)], "segments": _polyline_segments(pts), "points": dots}


def _legend_items(names: list[str], *, left: int, right: int, width: int, y: float) -> list[dict[str, Any]]:
    """Legend entries laid out left to right, wrapping to a new row at the right edge."""
    legend_items, lx, ly = [], left, y
    for idx, name in enumerate(names):
        if lx + 18 + 6 * len(name) > width - right and lx > left:
            lx, ly = left, ly + 13
        legend_items.append({"x": lx, "y": ly, "name": name, "color": PALETTE[idx % len(PALETTE)]})
        lx += 18 + 6 * len(name)
    return legend_items


def threshold_bar(relative: float | None, *, drifted: bool) -> dict[str, Any]:
    """A drift score as a bar whose middle is the feature's threshold: ``relative`` is the
    score's way to the threshold (``retrain_lib.tools.status_monitor.relative_to_threshold``: 1.0 = at it);
    beyond twice the threshold the bar is full and ``clipped``."""
    if relative is None:
        return {
            "width": 0,
            "tick": BAR_WIDTH // 2,
            "full": BAR_WIDTH,
            "drifted": drifted,
            "clipped": False,
            "missing": True,
        }
    r = max(float(relative), 0.0)
    return {
        "width": round(min(r, 2.0) * BAR_WIDTH / 2, 1),
        "tick": BAR_WIDTH // 2,
        "full": BAR_WIDTH,
        "drifted": drifted,
        "clipped": r > 2.0,
        "missing": False,
    }


def _marker_legend() -> list[dict[str, str]]:
    return [{"kind": k, "label": label, "color": color, "shape": shape} for k, (label, color, shape) in MARKERS.items()]


def _day_markers(day: dict) -> list[dict]:
    """A day's markers: its ledger events, and ``throttled`` for a retrain request held back."""
    out = list(day.get("markers") or [])
    if day.get("throttled") and day.get("action") == "healthy":
        out.append({"kind": "throttled", "reason": "retrain requested but throttled"})
    return out


def timeline_chart(
    timeline: list[dict], *, metric: str | None, drift_share_threshold: float | None, width: int = 980
) -> dict[str, Any]:
    """The model's days on one calendar axis: the live metric (with baseline and retrain
    limit) and the markers in the upper panel, the drifted share as bars in the lower one.

    ``timeline`` is ``retrain_lib.tools.status_timeline``'s per-day list (``as_of``, ``live``, ``baseline``,
    ``limit``, ``drifted_share``, ``action``, ``throttled``, ``markers``)."""
    left, right = 56, 16
    metric_h, gap, share_h, axis_h, legend_h = 150, 30, 64, 18, 18
    day_markers = [_day_markers(d) for d in timeline]
    lane_rows = max([len(ms) for ms in day_markers] + [1])
    lane_top = 24
    top = lane_top + 11 * lane_rows + 4  # the marker lane sits above the metric panel
    plot_w = width - left - right
    m_top, m_bottom = top, top + metric_h
    s_top = m_bottom + gap
    s_bottom = s_top + share_h
    height = s_bottom + axis_h + legend_h
    n = len(timeline)
    band = plot_w / max(n, 1)

    def x(i: int) -> float:
        return left + band * (i + 0.5)

    values = [d[k] for d in timeline for k in ("live", "baseline", "limit") if d.get(k) is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad

    def ym(v: float) -> float:
        return m_bottom - metric_h * (v - lo) / (hi - lo)

    def line(key: str) -> list[str]:
        return _polyline_segments([None if d.get(key) is None else (x(i), ym(d[key])) for i, d in enumerate(timeline)])

    live_points = [
        {"x": round(x(i), 1), "y": round(ym(d["live"]), 1), "day": d["as_of"], "value": d["live"]}
        for i, d in enumerate(timeline)
        if d.get("live") is not None
    ]
    markers = _timeline_markers(timeline, day_markers, x, lane_top)
    threshold = drift_share_threshold
    bars = _share_bars(timeline, x, band, share_h, s_bottom, threshold)
    xlabels = _day_labels([d["as_of"] for d in timeline], x, every=max(1, math.ceil(n / 10)))
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": left + plot_w,
        "lane_top": lane_top,
        "metric": metric,
        "metric_top": m_top,
        "metric_bottom": m_bottom,
        "share_top": s_top,
        "share_bottom": s_bottom,
        "axis_y": s_bottom + 13,
        "legend_y": s_bottom + axis_h + 10,
        "metric_grid": [{"y": round(ym(v), 1), "label": f"{v:.3g}"} for v in _ticks(lo, hi)] if values else [],
        "share_grid": [{"y": round(s_bottom - share_h * v, 1), "label": f"{v:.0%}"} for v in (0.0, 0.5, 1.0)],
        "share_threshold": None
        if threshold is None
        else {"y": round(s_bottom - share_h * min(max(threshold, 0.0), 1.0), 1), "label": f"{threshold:.0%}"},
        "live": line("live"),
        "baseline": line("baseline"),
        "limit": line("limit"),
        "live_points": live_points,
        "markers": markers,
        "bars": bars,
        "xlabels": xlabels,
        "days": n,
        "empty_metric": not live_points,
        "marker_legend": _marker_legend(),
    }


def _timeline_markers(timeline: list[dict], day_markers: list[list[dict]], x, lane_top: int) -> list[dict[str, Any]]:
    """The marker lane: one symbol per ledger event of a day, stacked in rows."""
    markers = []
    for i, (d, day_marks) in enumerate(zip(timeline, day_markers, strict=True)):
        for row, mk in enumerate(day_marks):
            label, color, shape = MARKERS.get(mk["kind"], (mk["kind"], "#444", "square"))
            markers.append(
                {
                    "x": round(x(i), 1),
                    "y": lane_top + 6 + 11 * row,
                    "day": d["as_of"],
                    "kind": mk["kind"],
                    "label": label,
                    "color": color,
                    "shape": shape,
                    "version": mk.get("version"),
                    "reason": mk.get("reason") or "",
                    "seq": mk.get("seq"),
                }
            )
    return markers


def _share_bars(
    timeline: list[dict], x, band: float, share_h: int, s_bottom: int, threshold: float | None
) -> list[dict]:
    """The lower panel: the drifted share of each checked day as a bar."""
    bars = []
    for i, d in enumerate(timeline):
        share = d.get("drifted_share")
        if share is None:
            continue
        h = max(share_h * min(max(share, 0.0), 1.0), 1.0)  # a checked day with no drift: a hairline
        bars.append(
            {
                "x": round(x(i) - band * 0.35, 1),
                "width": round(max(band * 0.7, 1.0), 1),
                "y": round(s_bottom - h, 1),
                "height": round(h, 1),
                "day": d["as_of"],
                "value": share,
                "drift": threshold is not None and share >= threshold,
                "state": "throttled" if d.get("throttled") and d.get("action") == "healthy" else d.get("action"),
            }
        )
    return bars
