"""The post-deploy guard's decision (:func:`retrain_lib.pipeline.guard.decide_guard`) and its
config block: which limit rolls back, when a guard ends clean, alarm without a rollback
target, and the false-rollback rate of its always-valid tests under repeated looks."""

from __future__ import annotations

import numpy as np
import pytest

from retrain_lib.core.config import check_model_file
from retrain_lib.pipeline.guard import (
    ALARM,
    CLEAN,
    CONTINUE,
    ROLLBACK,
    SUPERSEDED,
    GuardFacts,
    GuardLimits,
    GuardStart,
    decide_guard,
)

START = GuardStart(model="m", version="3", previous="2", since="2026-01-01T00:00:00+00:00")
LIMITS = GuardLimits(max_error_rate=0.05, max_p95_ms=200.0, min_requests=50, min_labels=100, alpha=0.01)


def facts(**kw) -> GuardFacts:
    base = dict(champion_now="3", elapsed_s=60.0, requests=500, errors=5, p95_ms=20.0)
    return GuardFacts(**{**base, **kw})


def paired(diffs: np.ndarray, **kw) -> GuardFacts:
    return facts(
        labelled=int(diffs.size), loss_diff_mean=float(diffs.mean()), loss_diff_var=float(diffs.var(ddof=1)), **kw
    )


def test_a_healthy_champion_continues_then_ends_clean_when_the_time_is_up():
    diffs = np.random.default_rng(0).normal(-0.01, 0.3, 400)
    assert decide_guard(START, paired(diffs), LIMITS, minutes=2).action == CONTINUE
    end = decide_guard(START, paired(diffs, elapsed_s=120.0), LIMITS, minutes=2)
    assert end.action == CLEAN and end.final
    assert "clean after 2 minutes" in end.reasons[0] and "error_rate" in end.reasons[0]
    assert all(not c.breached for c in end.checks)


def test_a_failing_champion_is_rolled_back_on_its_error_rate():
    d = decide_guard(START, facts(requests=200, errors=40), LIMITS, minutes=120)
    assert d.action == ROLLBACK
    assert len(d.reasons) == 1 and d.reasons[0].startswith("error_rate: error rate 20.00% of 200 requests")
    check = next(c for c in d.checks if c.name == "error_rate")
    assert check.breached and check.p_value <= 0.01


def test_an_error_rate_just_above_the_limit_is_not_enough_evidence_yet():
    # 6% of 100 vs a 5% limit: above the limit, but not shown above it
    d = decide_guard(START, facts(requests=100, errors=6), LIMITS, minutes=120)
    assert d.action == CONTINUE
    assert next(c for c in d.checks if c.name == "error_rate").p_value > 0.01


def test_too_few_requests_are_not_judged_even_when_all_failed():
    d = decide_guard(START, facts(requests=10, errors=10, p95_ms=None), LIMITS, minutes=120)
    assert d.action == CONTINUE
    check = next(c for c in d.checks if c.name == "error_rate")
    assert not check.judged and "10 requests < min_requests 50" in check.reason


def test_p95_latency_past_its_limit_rolls_back():
    d = decide_guard(START, facts(p95_ms=250.0), LIMITS, minutes=120)
    assert d.action == ROLLBACK and d.reasons == ("p95_latency_ms: p95 latency 250.0 ms vs limit 200 ms",)
    assert decide_guard(START, facts(p95_ms=200.0), LIMITS, minutes=120).action == CONTINUE  # equal passes


def test_a_champion_worse_on_the_same_labelled_requests_is_rolled_back():
    diffs = np.random.default_rng(1).normal(0.3, 0.5, 150)
    d = decide_guard(START, paired(diffs, champion_loss=0.8, previous_loss=0.5), LIMITS, minutes=120)
    assert d.action == ROLLBACK
    assert "previous-champion v2 on the same 150 labelled requests" in d.reasons[0]
    assert "(mean loss 0.8 vs 0.5)" in d.reasons[0]


def test_the_paired_test_waits_for_min_labels_and_respects_the_margin():
    diffs = np.random.default_rng(2).normal(0.3, 0.5, 99)
    assert decide_guard(START, paired(diffs), LIMITS, minutes=120).action == CONTINUE  # 99 < 100 labels
    diffs = np.random.default_rng(2).normal(0.1, 0.2, 2000)
    assert decide_guard(START, paired(diffs), LIMITS, minutes=120).action == ROLLBACK
    lenient = GuardLimits(min_labels=100, alpha=0.01, margin=0.2)
    assert decide_guard(START, paired(diffs), lenient, minutes=120).action == CONTINUE


def test_a_better_champion_is_never_rolled_back_by_the_paired_test():
    diffs = np.random.default_rng(3).normal(-0.3, 0.5, 3000)
    d = decide_guard(START, paired(diffs), LIMITS, minutes=120)
    assert d.action == CONTINUE
    assert next(c for c in d.checks if c.name == "paired_loss").p_value <= 0.01  # clearly different, but better


def test_shifted_outputs_roll_back_only_when_the_labels_do_not_show_the_champion_no_worse():
    rng = np.random.default_rng(3)
    shift = dict(output_psi=0.6, output_pairs=800)
    # no labels yet: a warning, never a rollback; the clean note keeps the warning
    early = decide_guard(START, facts(**shift), LIMITS, minutes=2)
    assert early.action == CONTINUE
    [check] = [c for c in early.checks if c.name == "output_shift"]
    assert not check.breached and check.reason.startswith("warning: output PSI 0.600")
    end = decide_guard(START, facts(elapsed_s=120.0, **shift), LIMITS, minutes=2)
    assert end.action == CLEAN and "warning: output PSI 0.600" in end.reasons[0]
    # labels that cannot tell the two apart: the shift rolls back
    undecided = decide_guard(START, paired(rng.normal(0.0, 0.3, 150), **shift), LIMITS, minutes=2)
    assert undecided.action == ROLLBACK and undecided.reasons[0].startswith("output_shift: output PSI 0.600")
    # labels showing the champion clearly better: the shift is waived (a warning only)
    better = decide_guard(START, paired(rng.normal(-0.3, 0.3, 400), **shift), LIMITS, minutes=2)
    assert better.action == CONTINUE
    [check] = [c for c in better.checks if c.name == "output_shift"]
    assert check.judged and not check.breached and check.reason.startswith("warning only")
    # a small shift, or no limit, is fine
    calm = decide_guard(START, paired(rng.normal(0.0, 0.3, 150), output_psi=0.05, output_pairs=800), LIMITS, minutes=2)
    assert calm.action == CONTINUE
    off = GuardLimits(max_error_rate=0.05, min_requests=50, min_labels=100, alpha=0.01, max_output_psi=None)
    assert decide_guard(START, paired(rng.normal(0.0, 0.3, 150), **shift), off, minutes=2).action == CONTINUE


def test_without_a_previous_champion_a_broken_limit_alarms_instead_of_rolling_back():
    start = GuardStart(model="m", version="2", previous=None, since=START.since, promotion="rollback")
    d = decide_guard(start, facts(champion_now="2", requests=200, errors=40), LIMITS, minutes=120)
    assert d.action == ALARM and d.final
    assert d.reasons[-1] == "no previous-champion to roll back to: alerting only"


def test_a_guard_whose_champion_moved_is_superseded_before_any_limit():
    d = decide_guard(START, facts(champion_now="4", requests=200, errors=200), LIMITS, minutes=120)
    assert d.action == SUPERSEDED and d.checks == ()
    assert "champion is now v4, not v3" in d.reasons[0]


def _false_rollbacks(draw, looks, limits, reps=300):
    """Guards of a champion at the edge of its limits (H0 true) looked at after every
    ``looks`` requests: how many ever roll back."""
    rolled = 0
    for rep in range(reps):
        rng = np.random.default_rng(1000 + rep)
        errors, diffs = draw(rng)
        for n in looks:
            f = facts(
                requests=n,
                errors=int(errors[:n].sum()),
                labelled=n,
                loss_diff_mean=float(diffs[:n].mean()),
                loss_diff_var=float(diffs[:n].var(ddof=1)),
            )
            if decide_guard(START, f, limits, minutes=1e6).action == ROLLBACK:
                rolled += 1
                break
    return rolled / reps


def test_false_rollbacks_stay_near_alpha_however_often_the_guard_looks():
    """Error rate exactly at its limit and a champion exactly as good as the previous one,
    looked at every 25 requests up to 2,000 (80 looks): an uncorrected test at 1% would roll
    back far more often; the always-valid tests stay at about alpha."""
    limits = GuardLimits(max_error_rate=0.05, max_p95_ms=None, min_requests=50, min_labels=100, alpha=0.01)

    def draw(rng):
        return rng.random(2000) < 0.05, rng.normal(0.0, 0.5, 2000)

    rate = _false_rollbacks(draw, range(50, 2001, 25), limits)
    assert rate <= 0.03, rate
    # the same looks with a fixed-sample one-sided z-test at 1% (scipy) on the paired losses
    from scipy.stats import norm

    naive = 0
    for rep in range(300):
        diffs = draw(np.random.default_rng(1000 + rep))[1]
        for n in range(100, 2001, 25):
            z = diffs[:n].mean() / (diffs[:n].std(ddof=1) / np.sqrt(n))
            if norm.sf(z) <= 0.01:
                naive += 1
                break
    assert naive / 300 > 2 * max(rate, 0.01), (naive, rate)  # peeking inflates an uncorrected test


def test_the_guard_block_validates_with_clear_messages(tmp_path, retrain_cfg_model_yaml):
    path = tmp_path / "churn_risk.yaml"
    path.write_text(retrain_cfg_model_yaml + "guard: {minutes: 1, interval_s: 90}\n", encoding="utf-8")
    cfg, problems = check_model_file(path)
    assert cfg is None
    assert any(
        p.field == "guard" and "interval_s (90) is longer than the guard itself (1 minutes = 60 s)" in p.reason
        for p in problems
    ), problems
    path.write_text(retrain_cfg_model_yaml + "guard: {minuts: 5}\n", encoding="utf-8")
    cfg, problems = check_model_file(path)
    assert cfg is None and any("did you mean 'minutes'" in p.reason for p in problems), problems


@pytest.mark.parametrize(
    ("extra", "enabled"),
    [
        ("", False),
        ("rollback: {max_drop: 0.05}\n", True),
        ("rollback: {max_drop: 0.05}\nguard: {enabled: false}\n", False),
        ("guard: {enabled: true, minutes: 5, interval_s: 10}\n", True),
    ],
)
def test_the_guard_is_on_by_default_exactly_when_the_model_has_rollback(
    tmp_path, retrain_cfg_model_yaml, extra, enabled
):
    path = tmp_path / "churn_risk.yaml"
    path.write_text(retrain_cfg_model_yaml + extra, encoding="utf-8")
    cfg, problems = check_model_file(path)
    assert problems == [] and cfg is not None
    assert cfg.guard_enabled is enabled
    assert (cfg.guard.minutes, cfg.guard.interval_s) == ((5, 10) if "minutes" in extra else (120, 30))


def test_the_guard_alert_says_how_the_guard_ended_and_an_alarm_is_always_red():
    from retrain_lib.pipeline import alerts

    clean = alerts.guard_end(
        "credit_default", {"action": "clean", "version": "5", "reason": "clean after 120 minutes"}, severity="green"
    )
    assert (clean.kind, clean.severity, clean.key) == ("guard", "green", "guard|credit_default|5:clean")
    assert clean.payload["blocks"][0]["text"]["text"].endswith("Guard passed: credit_default v5 stays champion")
    alarm = alerts.guard_end(
        "credit_default", {"action": "alarm", "version": "4", "reason": "error_rate: 30%"}, severity="green"
    )
    assert alarm.severity == "red" and "nothing to roll back to" in alarm.payload["blocks"][0]["text"]["text"]
    assert "error_rate: 30%" in alarm.payload["text"]
