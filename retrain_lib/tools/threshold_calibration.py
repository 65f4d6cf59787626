"""Calibrate a model config's monitor from a stable window: per-feature drift thresholds
for a target false-alarm rate and performance warning/critical levels (:func:`calibrate`),
as a config patch (:func:`apply_patch`, :func:`patch_yaml`); :func:`stable_checks` lists
the monitor checks a stable window holds."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import ConfigError, DataError
from retrain_lib.core.metrics import greater_is_better
from retrain_lib.stats.calibration import calibrate_feature
from retrain_lib.stats.drift import drift_for_config
from retrain_lib.stats.drift_methods import get_method
from retrain_lib.stats.drift_stats import NUMERIC
from retrain_lib.store.data import day_range, load_window
from retrain_lib.tools.artifact_store import train_artifact
from retrain_lib.tools.replay_context import ReplaySettings, day_list


def stable_checks(cfg: ModelConfig, settings: ReplaySettings, start: dt.date, end: dt.date):
    """The monitor checks a stable window holds: for each day ``d`` with room for both
    windows inside ``start..end``, the ``reference_days`` before the current window as the
    reference and the ``monitor_days`` ending on ``d`` as the current window. Yields
    ``(day, reference frame, current frame)``."""
    m, r = cfg.windows.monitor_days, cfg.windows.reference_days
    first = start + dt.timedelta(days=m + r - 1)
    for day in day_list(first, end) if first <= end else []:
        cur_start, cur_end = day_range(day, m)
        ref_end = cur_start - dt.timedelta(days=1)
        ref = load_window(cfg, settings, ref_end - dt.timedelta(days=r - 1), ref_end, as_of=ref_end)
        cur = load_window(cfg, settings, cur_start, cur_end, as_of=day)
        yield day, ref.frame, cur.frame


def _round_up(x: float) -> float:
    if not math.isfinite(x) or x <= 0:
        return x
    e = math.floor(math.log10(x)) - 2
    return float(f"{math.ceil(x / 10**e)}e{e}")  # three significant digits, without float noise


def _round_down(x: float) -> float:
    if not math.isfinite(x) or x <= 0:
        return x
    e = math.floor(math.log10(x)) - 2
    return float(f"{math.floor(x / 10**e)}e{e}")


def calibrate(
    cfg: ModelConfig,
    data_root,
    *,
    stable_from: dt.date,
    stable_to: dt.date,
    false_alarm_rate: float = 0.01,
    warn_ratio: float = 0.90,
    critical_ratio: float = 0.80,
    platform=None,
) -> dict[str, Any]:
    """Drift thresholds for a target false-alarm rate and performance levels from a stable
    window, as a config patch (``patch``) with the evidence (``checks``, per-feature scores).

    Per feature (its configured method), the threshold is the stricter-for-alarms of

    * the null-model threshold at the monitor's sample sizes
      (:func:`retrain_lib.stats.calibration.calibrate_feature`) at level ``far / k`` (``k``
      checked features: Bonferroni, so under no drift the chance that *any* feature
      fires, and so that the dataset drifts, stays below ``far``), and
    * the same quantile of the feature's statistic over the stable window's checks,

    so that it holds on the stable window as observed and in theory. Distance methods:
    the larger of both (rounded up); p-value methods (ks, chi2): the smaller (rounded down).

    Performance: ``warn_drop = 1 - warn_ratio`` and ``critical_drop = 1 - critical_ratio``
    (relative to the champion's baseline, in the metric's direction), reported with the
    baseline a model trained on the stable window reaches on its holdout.
    """
    if not 0 < false_alarm_rate < 1:
        raise ConfigError(f"--false-alarm-rate must be in (0, 1), got {false_alarm_rate}")
    if not 0 < critical_ratio < warn_ratio < 1:
        raise ConfigError(f"need 0 < --critical ({critical_ratio}) < --warn ({warn_ratio}) < 1")
    if stable_to < stable_from:
        raise ConfigError(f"--stable-to {stable_to} is before --stable-from {stable_from}")
    settings = ReplaySettings(Path(data_root), platform)
    need = cfg.windows.monitor_days + cfg.windows.reference_days
    if (stable_to - stable_from).days + 1 < need:
        raise ConfigError(
            f"the stable window {stable_from}..{stable_to} has {(stable_to - stable_from).days + 1} "
            f"day(s); one check needs windows.reference_days + windows.monitor_days = {need}"
        )
    stats = _stable_statistics(cfg, settings, stable_from, stable_to, false_alarm_rate)
    if not stats.checks:
        raise DataError(f"no monitor check fits in {stable_from}..{stable_to} with the data of {cfg.name!r}")
    features_patch: dict[str, dict] = {}
    evidence: dict[str, dict] = {}
    k = len(stats.meta)
    level = false_alarm_rate / max(k, 1)
    for name, (method, kind, p_scale) in stats.meta.items():
        evidence[name] = _feature_threshold(
            method, kind, p_scale, stats.scores[name], stats.null_thresholds[name], level
        )
        features_patch[name] = {"method": method, "threshold": evidence[name]["threshold"]}
    perf_patch, levels = _performance_levels(cfg, settings, stable_to, warn_ratio, critical_ratio)
    patch = {"drift": {"features": features_patch}, "performance": perf_patch}
    return {
        "model": cfg.name,
        "stable_from": stable_from.isoformat(),
        "stable_to": stable_to.isoformat(),
        "checks": stats.checks,
        "false_alarm_rate": false_alarm_rate,
        "per_feature_level": level,
        "patch": patch,
        "features": evidence,
        "performance": levels,
    }


@dataclass
class _StableStatistics:
    """Per feature over the stable window's checks: ``(method, kind, p-value scale)``
    (``meta``), the statistic (``scores``) and the null-model threshold (``null_thresholds``)."""

    checks: int = 0
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    meta: dict[str, tuple] = field(default_factory=dict)
    null_thresholds: dict[str, list[float]] = field(default_factory=dict)


def _stable_statistics(
    cfg: ModelConfig, settings: ReplaySettings, stable_from: dt.date, stable_to: dt.date, false_alarm_rate: float
) -> _StableStatistics:
    """Run the monitor's drift check on every check of the stable window."""
    stats = _StableStatistics()
    for _day, ref, cur in stable_checks(cfg, settings, stable_from, stable_to):
        stats.checks += 1
        report = drift_for_config(cfg, ref, cur)
        k = len(report.features)
        level = false_alarm_rate / max(k, 1)
        for f in report.features:
            p_scale = get_method(f.method).uses_p_value
            stats.meta[f.name] = (f.method, f.kind, p_scale)
            stats.scores.setdefault(f.name, []).append(f.p_value if p_scale else f.score)
            cal = calibrate_feature(
                f.name,
                f.method,
                f.kind,
                ref[f.name],
                cur[f.name],
                score=f.score,
                p_value=f.p_value,
                n_ref=f.reference_rows,
                n_cur=f.current_rows,
                bins=cfg.drift.bins,
                binning="quantile",
                false_alarm_rate=level,
            )
            stats.null_thresholds.setdefault(f.name, []).append(cal.null.threshold(level))
    return stats


def _feature_threshold(method: str, kind, p_scale: bool, scores: list, nulls: list, level: float) -> dict:
    """A feature's threshold at ``level`` from its stable-window statistics and null-model
    thresholds, with the evidence."""
    import numpy as np

    values = np.asarray([v for v in scores if v is not None and np.isfinite(v)], dtype=float)
    nulls = [t for t in nulls if t is not None and np.isfinite(t)]
    if p_scale:
        observed = float(np.quantile(values, level, method="lower")) if values.size else 1.0
        null = float(np.min(nulls)) if nulls else level
        threshold = _round_down(min(null, observed * 0.999 if observed > 0 else null))
        threshold = max(threshold, 1e-300)
    else:
        observed = float(np.quantile(values, 1 - level, method="higher")) if values.size else 0.0
        null = float(np.max(nulls)) if nulls else observed
        threshold = _round_up(max(null, observed * 1.001))
    return {
        "method": method,
        "kind": "numeric" if kind == NUMERIC else "categorical",
        "scale": "p_value (drift when <=)" if p_scale else "score (drift when >=)",
        "stable_min": float(values.min()) if values.size else None,
        "stable_max": float(values.max()) if values.size else None,
        "null_threshold": null,
        "stable_quantile": observed,
        "threshold": float(threshold),
    }


def _performance_levels(
    cfg: ModelConfig, settings: ReplaySettings, stable_to: dt.date, warn_ratio: float, critical_ratio: float
) -> tuple[dict[str, Any], dict | None]:
    """The performance patch and, with a baseline, its warning and critical levels."""
    baseline = _stable_baseline(cfg, settings, stable_to)
    metric = cfg.performance.metric if cfg.performance else cfg.primary_metric
    up = greater_is_better(metric)
    warn_drop, critical_drop = round(1 - warn_ratio, 6), round(1 - critical_ratio, 6)
    perf_patch: dict[str, Any] = {"metric": metric, "warn_drop": warn_drop, "critical_drop": critical_drop}
    levels = None
    if baseline is not None:
        sign = -1 if up else 1
        levels = {
            "baseline": baseline,
            "warn_at": baseline + sign * warn_drop * abs(baseline),
            "critical_at": baseline + sign * critical_drop * abs(baseline),
        }
    return perf_patch, levels


def _stable_baseline(cfg: ModelConfig, settings: ReplaySettings, stable_to: dt.date) -> float | None:
    """The holdout metric of a model trained on the stable window (as of its last day)."""
    art = train_artifact(cfg, settings, stable_to)
    metric = cfg.performance.metric if cfg.performance else cfg.primary_metric
    return art.metrics.get(metric) if art.valid else None


def apply_patch(cfg: ModelConfig, patch: dict) -> ModelConfig:
    """``cfg`` with a calibrate patch merged in (validated again)."""
    dump = cfg.model_dump(mode="json", exclude_unset=False)
    features = dict(dump["drift"].get("features") or {})
    features.update(patch.get("drift", {}).get("features", {}))
    dump["drift"]["features"] = features
    if patch.get("performance") and dump.get("performance"):
        dump["performance"].update(patch["performance"])
    return ModelConfig.model_validate(dump)


def patch_yaml(result: dict) -> str:
    """The patch as YAML, with the evidence as comments."""
    import yaml

    lines = [
        f"# retrain calibrate {result['model']}: stable window {result['stable_from']}..{result['stable_to']}, "
        f"{result['checks']} monitor check(s)",
        f"# target false-alarm rate {result['false_alarm_rate']:g} (per feature {result['per_feature_level']:.2g}, "
        "Bonferroni)",
    ]
    for name, ev in result["features"].items():
        lo, hi = ev["stable_min"], ev["stable_max"]
        rng = f"{lo:.4g}..{hi:.4g}" if lo is not None else "no values"
        lines.append(f"#   {name}: {ev['method']} {ev['scale']}; stable {rng}; null {ev['null_threshold']:.4g}")
    if result["performance"]:
        p = result["performance"]
        lines.append(
            f"# performance: baseline {p['baseline']:.4f} (holdout of a model trained on the stable window); "
            f"warning at {p['warn_at']:.4f}, critical at {p['critical_at']:.4f}"
        )
    return "\n".join(lines) + "\n" + yaml.safe_dump(result["patch"], sort_keys=False)
