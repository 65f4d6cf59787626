"""The records of a backtest: the per-policy summary (:func:`summarize`: retrains, compute,
the prequential metric, the metric lost vs the oracle, detection delays, false alarms), the
compact day-by-day decisions (:func:`compact_day`), the short form (:func:`headline`) and
the plot (:func:`plot_backtest`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.metrics import greater_is_better
from retrain_lib.tools.backtest_scoring import Scorer
from retrain_lib.tools.replay import PolicyRun


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(sum(values) / len(values)) if values else None


def summarize(
    cfg: ModelConfig,
    runs: dict[str, PolicyRun],
    scorer: Scorer,
    days: list[dt.date],
    drifts: list[dict],
    *,
    improvement_days: int = 7,
) -> dict[str, Any]:
    """Per policy: retrains and their days, compute, the prequential metric, the metric lost
    vs the oracle, detection delays and false alarms."""
    up = greater_is_better(scorer.metric)
    names = [d.isoformat() for d in days]
    metric_by_policy = {name: {d: scorer.value(run.serving.get(d), [d]) for d in names} for name, run in runs.items()}
    oracle = metric_by_policy.get("oracle")
    out: dict[str, Any] = {}
    for name, run in runs.items():
        daily = metric_by_policy[name]
        first = next((r for r in run.retrains if r.get("outcome") == "deployed"), None)
        later = [r for r in run.retrains if r is not first]
        deployed = [r for r in later if r.get("outcome") == "deployed"]
        lost = None
        if oracle is not None:
            gaps = [
                (best - value) * (1 if up else -1)
                for d in names
                if (best := oracle[d]) is not None and (value := daily[d]) is not None
            ]
            lost = _mean(gaps)
        false_alarms = _false_alarms(run, later, deployed, scorer, names, up, improvement_days)
        detection = _detection(run, later, drifts)
        out[name] = {
            "source": run.source,
            "first_model": first["day"] if first else None,
            "retrains": len(later),
            "retrain_days": [r["day"] for r in later],
            "deployed": len(deployed),
            "deployed_days": [r["day"] for r in deployed],
            "rejected_days": [r["day"] for r in later if r.get("outcome") == "rejected"],
            "rollbacks": [b["day"] for b in run.rollbacks if b["outcome"] == "rolled_back"],
            "triggers": {t: sum(1 for r in later if r["trigger"] == t) for t in sorted({r["trigger"] for r in later})},
            "compute_s": round(run.compute_s, 2),
            "replay_wall_s": round(run.wall_s, 1),
            "metric_mean": _mean(daily.values()),
            "metric_lost_vs_oracle": lost,
            "detection": detection,
            "false_alarms": len(false_alarms),
            "false_alarm_details": false_alarms,
            "metric_by_day": daily,
        }
    return out


def _false_alarms(
    run: PolicyRun,
    later: list[dict],
    deployed: list[dict],
    scorer: Scorer,
    names: list[str],
    up: bool,
    improvement_days: int,
) -> list[dict]:
    """The retrains after the first model that were not deployed, or deployed without
    improving the metric over the old model on the next ``improvement_days`` days (until the
    next change of champion). Sets each deployed retrain's ``improvement``."""
    change_days = [r["day"] for r in deployed] + [b["day"] for b in run.rollbacks if b["outcome"] == "rolled_back"]
    false_alarms = []
    for r in later:
        if r.get("outcome") != "deployed":
            false_alarms.append({"day": r["day"], "trigger": r["trigger"], "why": f"not deployed ({r.get('outcome')})"})
            continue
        if r["champion_before"] is None:
            continue
        nxt = min([c for c in change_days if c > r["day"]], default=None)
        after = [d for d in names if d > r["day"] and (nxt is None or d <= nxt)][:improvement_days]
        new, old = scorer.value(r["champion_after"], after), scorer.value(r["champion_before"], after)
        r["improvement"] = None if new is None or old is None else (new - old) * (1 if up else -1)
        if r["improvement"] is not None and r["improvement"] <= 0:
            false_alarms.append(
                {
                    "day": r["day"],
                    "trigger": r["trigger"],
                    "why": f"{scorer.metric} {new:.4f} vs {old:.4f} for the old model on the next {len(after)} day(s)",
                }
            )
    return false_alarms


def _detection(run: PolicyRun, later: list[dict], drifts: list[dict]) -> list[dict]:
    """Per drift: the first retrain (or rollback) of the policy on or after its day."""
    detection = []
    # A monitored policy detects a drift with a trigger of its monitor (not its schedule);
    # the others only adapt with their next retrain.
    caught = [r for r in later if not run.monitor or r["trigger"] not in ("schedule", "daily")]
    for drift in drifts:
        hit = next((r for r in caught if r["day"] >= drift["day"]), None)
        back = next((b for b in run.rollbacks if b["day"] >= drift["day"]), None)
        if back is not None and (hit is None or back["day"] < hit["day"]):
            hit = {"day": back["day"], "trigger": "rollback", "outcome": back["outcome"]}
        detection.append(
            {
                "drift": drift["day"],
                "source": drift["source"],
                "detected_on": hit["day"] if hit else None,
                "delay_days": (dt.date.fromisoformat(hit["day"]) - dt.date.fromisoformat(drift["day"])).days
                if hit
                else None,
                "trigger": hit["trigger"] if hit else None,
                "outcome": hit.get("outcome") if hit else None,
            }
        )
    return detection


def attach_after(runs: dict[str, PolicyRun]) -> None:
    """Each retrain knows the champion after it (the serving model of the next day)."""
    for run in runs.values():
        by_day = {d["day"]: d for d in run.days}
        for r in run.retrains:
            r["champion_after"] = by_day.get(r["day"], {}).get("champion")


def compact_day(day: dict) -> dict:
    """The short record of a replayed day: the monitor's action and reasons (throttled), the
    trigger, outcome, gain test, failed gates and problems of its retrains, its rollback's outcome."""
    out = {"day": day["day"]}
    if "decision" in day:
        out["action"] = day["decision"]["action"]
        out["reasons"] = day["decision"]["reasons"]
        if day["decision"].get("throttled"):
            out["throttled"] = True
    for k in ("scheduled", "retrain"):
        if k in day:
            out[k] = {
                x: day[k].get(x) for x in ("trigger", "outcome", "gain", "failed_gates", "problems") if day[k].get(x)
            }
    if "rollback" in day:
        out["rollback"] = day["rollback"]["outcome"]
    return out


def headline(summary: dict) -> dict[str, Any]:
    """The short form of a backtest summary: per policy the counts, metrics and the metric per
    day, without the day-by-day decisions (``decisions``) and the false-alarm details."""
    keep = (
        "retrains",
        "retrain_days",
        "deployed",
        "rollbacks",
        "compute_s",
        "metric_mean",
        "metric_lost_vs_oracle",
        "detection",
        "false_alarms",
        "metric_by_day",
    )
    return {
        **{k: v for k, v in summary.items() if k not in ("policies", "decisions")},
        "policies": {n: {k: p[k] for k in keep} for n, p in summary["policies"].items()},
    }


def plot_backtest(summary: dict, path: Path) -> Path:
    """The metric over time per policy, with markers on deployed (triangle) and rejected
    (cross) retrains and dashed lines at the drifts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    # Dates on the x axis: matplotlib converts them (its date units), which its stubs do not
    # know (they type coordinates as floats and arrays): hence the ignores below.
    for name, pol in summary["policies"].items():
        days = [dt.date.fromisoformat(d) for d, v in pol["metric_by_day"].items() if v is not None]
        values = [v for v in pol["metric_by_day"].values() if v is not None]
        (line,) = ax.plot(
            days,  # type: ignore[arg-type]
            values,
            label=f"{name} ({pol['retrains']} retrains)",
            lw=1.6,
            zorder=3 if name == "config" else 2,
        )
        for marker, key in (("^", "deployed_days"), ("x", "rejected_days")):
            xs = [dt.date.fromisoformat(d) for d in pol[key] if pol["metric_by_day"].get(d) is not None]
            ys = [pol["metric_by_day"][d.isoformat()] for d in xs]
            ax.scatter(xs, ys, marker=marker, color=line.get_color(), s=45, zorder=4)  # type: ignore[arg-type]
    for drift in summary["drifts"]:
        ax.axvline(dt.date.fromisoformat(drift["day"]), color="grey", ls="--", lw=1)  # type: ignore[arg-type]
        ax.annotate(
            f"drift ({drift['source']})",
            (dt.date.fromisoformat(drift["day"]), 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color="grey",
        )
    ax.set_title(
        f"{summary['model']}: prequential {summary['metric']} per day (^ retrain deployed, x retrain rejected)"
    )
    ax.set_ylabel(summary["metric"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
