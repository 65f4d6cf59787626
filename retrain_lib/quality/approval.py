"""When a promotion needs a human: the reasons, from the config's ``approval`` section.

Pure functions of what the retrain run already knows (gate results, the champion's version
tags, row counts); the Airflow side (``ApprovalOperator``) only asks when this says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from retrain_lib.core.config import ModelConfig
from retrain_lib.quality.gate_types import GateResult

FEATURES_TAG = "features"
ROWS_TAG = "rows.train"


def feature_signature(cfg: ModelConfig) -> str:
    """The feature list as a version tag: numeric and categorical features, sorted."""
    return ",".join(sorted(cfg.features.numeric)) + "|" + ",".join(sorted(cfg.features.categorical))


def gate_margin(result: GateResult) -> float | None:
    """How far a passed gate's observed value is from its threshold (``None`` when the gate
    has no numeric threshold, was skipped, or failed)."""
    if not result.passed:
        return None
    if result.skipped:
        return None
    thr, obs = result.threshold, result.observed
    if thr is None or obs is None:
        return None
    try:
        value = abs(float(obs) - float(thr))
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def approval_reasons(
    cfg: ModelConfig,
    *,
    champion_tags: dict[str, str] | None,
    gate_results: Iterable[GateResult],
    train_rows: int | None,
) -> list[str]:
    """Why this candidate needs a human answer before promotion (empty: it does not), from the
    config's ``approval`` section, the champion's version tags, the candidate's gate results
    and its training rows."""
    spec = cfg.approval
    if spec is None:
        return []
    reasons: list[str] = []
    when = set(spec.required_when)
    if "always" in when:
        reasons.append("the config asks for an approval of every promotion")
    if "first_deployment" in when and champion_tags is None:
        reasons.append("first deployment: there is no champion yet")
    if champion_tags is not None:
        if "new_features" in when:
            before = champion_tags.get(FEATURES_TAG)
            now = feature_signature(cfg)
            if before is not None and before != now:
                old = set(before.replace("|", ",").split(",")) - {""}
                new = set(now.replace("|", ",").split(",")) - {""}
                added, removed = sorted(new - old), sorted(old - new)
                parts = ([f"added {', '.join(added)}"] if added else []) + (
                    [f"removed {', '.join(removed)}"] if removed else []
                )
                reasons.append(f"new features vs the champion: {'; '.join(parts) or 'types changed'}")
        if "rows_changed" in when and train_rows is not None and champion_tags.get(ROWS_TAG):
            try:
                old_rows = int(float(champion_tags[ROWS_TAG]))
            except ValueError:
                old_rows = 0
            if old_rows > 0:
                change = abs(train_rows - old_rows) / old_rows * 100
                if change > spec.rows_changed_pct:
                    reasons.append(
                        f"training rows changed by {change:.0f}% ({old_rows} -> {train_rows}), more than "
                        f"{spec.rows_changed_pct:g}%"
                    )
    if "narrow_margin" in when:
        for res in gate_results:
            margin = gate_margin(res)
            if margin is not None and margin < spec.margin:
                reasons.append(
                    f"gate {res.gate}{'' if res.slice == 'all' else '[' + res.slice + ']'}"
                    f" passed by {margin:.4g} only (< margin {spec.margin:g})"
                )
    return reasons
