"""decide(): the monitor's decision as a pure function of facts (drift, performance, new
labels, age, recent retrain requests) and the model's config."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.config_sections import Adaptation
from retrain_lib.pipeline.decision import HEALTHY, RETRAIN, ROLLBACK, decide
from retrain_lib.pipeline.monitor_records import MonitorDecision, Signal

AS_OF = dt.date(2026, 2, 10)


def make_cfg(performance: dict | None = None, schedule: dict | None = None) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "name": "churn_risk",
            "owner": "ml@example.com",
            "task": "classification",
            "data": {"path": "churn_risk", "id_column": "id", "timestamp_column": "ts", "label_delay_days": 3},
            "features": {"target": "y", "numeric": ["a", "b"], "categorical": ["plan"], "segments": ["plan"]},
            "schedule": {"min_retrain_interval_days": 2, **(schedule or {})},
            "performance": {
                "metric": "roc_auc",
                "min_labels": 100,
                "min_segment_labels": 50,
                **(performance if performance is not None else {"max_drop": 0.05}),
            },
            "training": {"estimator": "sklearn.linear_model.LogisticRegression"},
        }
    )


def champion(trained: str = "2026-02-01"):
    return SimpleNamespace(version="3", tags={"trained_as_of": trained, "data.end": trained})


def drift(fired: bool) -> dict:
    top = [{"name": "income", "drifted": fired, "explain": "income psi 0.31 >= 0.2"}]
    return {"dataset_drift": fired, "drifted_share": 0.5 if fired else 0.1, "drift_share_threshold": 0.3, "top": top}


def perf(live: float, baseline: float = 0.80, segments=(), estimate=None) -> dict:
    out = {
        "metric": "roc_auc",
        "live": live,
        "baseline": baseline,
        "baseline_source": "holdout",
        "labels": 900,
        "segments": list(segments),
    }
    if estimate is not None:
        out["estimate"] = estimate
    return out


def signal(decision: MonitorDecision, name: str) -> Signal:
    return next(s for s in decision.signals if s.signal == name)


def test_no_champion_retrains():
    d = decide(make_cfg(), as_of=AS_OF, champion=None, drift=None, performance=None)
    assert d.action == RETRAIN and d.signals[0].signal == "champion"


def test_no_signal_is_healthy():
    d = decide(make_cfg(), as_of=AS_OF, champion=champion(), drift=drift(False), performance=perf(0.79))
    assert d.action == HEALTHY and list(d.reasons) == ["no trigger fired"] and not d.throttled
    assert [s.signal for s in d.signals] == ["drift", "performance"]
    assert not any(s.triggered for s in d.signals)


def test_drift_alone():
    d = decide(make_cfg(), as_of=AS_OF, champion=champion(), drift=drift(True), performance=None)
    assert d.action == RETRAIN
    assert list(d.reasons) == ["data drift: 50% of features drifted (>= 30%): income psi 0.31 >= 0.2"]
    assert signal(d, "drift").to_xcom() == {
        "signal": "drift",
        "triggered": True,
        "value": 0.5,
        "threshold": 0.3,
        "detail": {"features": ["income"]},
    }


def test_absolute_max_drop_still_retrains():
    d = decide(make_cfg(), as_of=AS_OF, champion=champion(), drift=None, performance=perf(0.74))
    assert d.action == RETRAIN
    assert d.reasons[0].startswith("performance: roc_auc 0.7400 vs holdout baseline 0.8000 (drop 0.0600")
    assert "> max_drop 0.05" in d.reasons[0]
    s = signal(d, "performance")
    assert s.triggered and s.value == 0.74 and s.threshold == pytest.approx(0.75)
    assert s.detail["level"] == "critical"


@pytest.mark.parametrize(
    ("live", "action", "level"),
    [
        (0.77, HEALTHY, "ok"),  # -3.75 %
        (0.75, HEALTHY, "warn"),  # -6.25 %: warning only
        (0.71, RETRAIN, "critical"),  # -11.25 %
    ],
)
def test_warn_vs_critical(live, action, level):
    cfg = make_cfg({"warn_drop": 0.05, "critical_drop": 0.10})
    d = decide(cfg, as_of=AS_OF, champion=champion(), drift=None, performance=perf(live))
    assert d.action == action
    s = signal(d, "performance")
    assert s.detail["level"] == level and s.triggered is (level == "critical")
    assert s.threshold == pytest.approx(0.72)
    if level == "warn":
        assert d.reasons[0].startswith("performance warning (no retrain by itself): roc_auc 0.7500")
        assert "> warn_drop 5%" in d.reasons[0] and d.reasons[-1] == "no trigger fired"
    if level == "critical":
        assert "> critical_drop 10%" in d.reasons[0]


def test_segments_are_flagged_with_their_detail():
    segs = [
        {"segment": "plan", "value": "basic", "rows": 400, "live": 0.60, "baseline": 0.80},  # -25 %: critical
        {"segment": "plan", "value": "pro", "rows": 400, "live": 0.755, "baseline": 0.80},  # -5.6 %: warn
        {"segment": "plan", "value": "tiny", "rows": 10, "live": 0.30, "baseline": 0.80},  # too few rows
        {"segment": "plan", "value": "gold", "rows": 400, "live": 0.81, "baseline": 0.80},
    ]
    cfg = make_cfg({"warn_drop": 0.05, "critical_drop": 0.10})
    d = decide(cfg, as_of=AS_OF, champion=champion(), drift=None, performance=perf(0.79, segments=segs))
    assert d.action == HEALTHY  # the overall metric decides; segments are recorded
    flagged = signal(d, "performance_segments").detail["flagged"]
    assert [(f["value"], f["level"]) for f in flagged] == [("basic", "critical"), ("pro", "warn")]
    assert d.reasons[0].startswith(
        "performance segments past a level: plan=basic roc_auc 0.6000 vs 0.8000 "
        "(drop 25.0%, critical, 400 rows); plan=pro"
    )
    d = decide(cfg, as_of=AS_OF, champion=champion(), drift=None, performance=perf(0.70, segments=segs))
    assert d.action == RETRAIN and d.reasons[1].startswith("performance segments past a level: plan=basic")


def test_estimate_counts_only_with_use_estimate():
    est = {"value": 0.68, "low": 0.65, "high": 0.71, "rows": 800}
    off = make_cfg({"critical_drop": 0.10})
    d = decide(off, as_of=AS_OF, champion=champion(), drift=None, performance=perf(0.79, estimate=est))
    assert d.action == HEALTHY
    assert d.reasons[0].startswith("performance warning (estimated, use_estimate off): estimated roc_auc 0.6800")
    assert not signal(d, "performance_estimate").triggered
    on = make_cfg({"critical_drop": 0.10, "use_estimate": True})
    d = decide(on, as_of=AS_OF, champion=champion(), drift=None, performance=perf(0.79, estimate=est))
    assert d.action == RETRAIN
    assert list(d.reasons) == [
        "performance (estimated, labels not yet arrived): estimated roc_auc 0.6800 (interval "
        "0.6500..0.7100, 800 rows without labels) vs baseline 0.8000 (drop 0.1200, 15.0% of "
        "baseline > critical_drop 10%)"
    ]
    s = signal(d, "performance_estimate")
    assert s.triggered and s.value == 0.68 and s.threshold == pytest.approx(0.72)
    # before any matured label: the estimate alone
    only = {"metric": "roc_auc", "baseline": 0.80, "labels": 0, "segments": [], "estimate": est}
    assert decide(on, as_of=AS_OF, champion=champion(), drift=None, performance=only).action == RETRAIN
    small = {**est, "value": 0.76}
    d = decide(on, as_of=AS_OF, champion=champion(), drift=None, performance=perf(0.79, estimate=small))
    assert d.action == HEALTHY and not signal(d, "performance_estimate").triggered


def test_new_labels_share():
    cfg = make_cfg(schedule={"new_labels_share": 0.15})
    facts = {"labelled_rows": 1500, "train_rows": 10_000, "since": "2026-02-02"}
    d = decide(cfg, as_of=AS_OF, champion=champion(), drift=None, performance=None, new_labels=facts)
    assert d.action == RETRAIN
    assert list(d.reasons) == [
        "new labels: 1500 labelled rows matured since 2026-02-02 (15% of the champion's 10000 "
        "training rows >= new_labels_share 15%)"
    ]
    assert signal(d, "new_labels").value == pytest.approx(0.15)
    d = decide(
        cfg, as_of=AS_OF, champion=champion(), drift=None, performance=None, new_labels={**facts, "labelled_rows": 1499}
    )
    assert d.action == HEALTHY and not signal(d, "new_labels").triggered
    # unknown training rows: no signal rather than a guess
    d = decide(
        cfg, as_of=AS_OF, champion=champion(), drift=None, performance=None, new_labels={**facts, "train_rows": None}
    )
    assert d.action == HEALTHY and not d.signals


def test_age():
    cfg = make_cfg(schedule={"max_days_without_retrain": 7})
    d = decide(cfg, as_of=AS_OF, champion=champion("2026-02-03"), drift=None, performance=None)
    assert d.action == RETRAIN and list(d.reasons) == ["champion is 7 days old (>= max_days_without_retrain 7)"]
    d = decide(cfg, as_of=AS_OF, champion=champion("2026-02-04"), drift=None, performance=None)
    assert d.action == HEALTHY


def test_combination_keeps_every_reason():
    cfg = make_cfg({"warn_drop": 0.05, "critical_drop": 0.10}, {"new_labels_share": 0.1})
    d = decide(
        cfg,
        as_of=AS_OF,
        champion=champion(),
        drift=drift(True),
        performance=perf(0.70),
        new_labels={"labelled_rows": 5000, "train_rows": 10_000, "since": "2026-02-02"},
    )
    assert d.action == RETRAIN
    assert [r.split(":")[0] for r in d.reasons] == ["data drift", "performance", "new labels"]
    assert [s.signal for s in d.signals if s.triggered] == ["drift", "performance", "new_labels"]


def test_throttled_by_min_interval():
    d = decide(make_cfg(), as_of=AS_OF, champion=champion("2026-02-09"), drift=drift(True), performance=None)
    assert d.action == HEALTHY and d.throttled
    assert d.reasons[-1] == "throttled: last retrain 1 day(s) ago (< min_retrain_interval_days 2)"
    assert signal(d, "min_retrain_interval").triggered


def test_throttled_by_max_retrains():
    cfg = make_cfg(schedule={"max_retrains": {"count": 2, "days": 7}})
    d = decide(
        cfg,
        as_of=AS_OF,
        champion=champion(),
        drift=drift(True),
        performance=None,
        recent_retrains=["2026-02-05", "2026-02-08"],
    )
    assert d.action == HEALTHY and d.throttled
    assert d.reasons[-1] == (
        "throttled: 2 retrain request(s) in the last 7 days (2026-02-05, 2026-02-08) (max_retrains 2 per 7 days)"
    )
    s = signal(d, "max_retrains")
    assert s.triggered and s.value == 2 and s.threshold == 2
    d = decide(
        cfg, as_of=AS_OF, champion=champion(), drift=drift(True), performance=None, recent_retrains=["2026-02-08"]
    )
    assert d.action == RETRAIN and not signal(d, "max_retrains").triggered
    # nothing to throttle: no max_retrains signal
    d = decide(
        cfg,
        as_of=AS_OF,
        champion=champion(),
        drift=drift(False),
        performance=None,
        recent_retrains=["2026-02-05", "2026-02-08"],
    )
    assert d.action == HEALTHY and not d.throttled


def test_decide_is_pure():
    cfg = make_cfg({"warn_drop": 0.05, "critical_drop": 0.10})
    facts = {"performance": perf(0.70), "drift": drift(True)}
    assert decide(cfg, as_of=AS_OF, champion=champion(), **facts) == decide(
        cfg, as_of=AS_OF, champion=champion(), **facts
    )


@pytest.mark.parametrize(
    ("performance", "message"),
    [
        ({"metric": "roc_auc"}, "at least one of max_drop, warn_drop, critical_drop"),
        ({"metric": "roc_auc", "warn_drop": 0.1, "critical_drop": 0.05}, "warn_drop (0.1) must be smaller"),
        ({"metric": "roc_auc", "max_drop": 0.05, "use_estimate": True}, "use_estimate needs critical_drop"),
    ],
)
def test_performance_levels_are_validated(performance, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_cfg(performance)


def test_relative_levels_without_max_drop_validate():
    cfg = make_cfg({"critical_drop": 0.1})
    assert cfg.performance.max_drop is None and cfg.performance.baseline_days == 14
    assert make_cfg().performance.max_drop == 0.05


def rollback_facts(champion_live: float, previous_live: float, max_drop: float = 0.05) -> dict:
    rel = (previous_live - champion_live) / previous_live
    return {
        "metric": "roc_auc",
        "champion": "3",
        "previous": "2",
        "promoted_as_of": "2026-02-05",
        "labels": 800,
        "window": ["2026-02-05", "2026-02-07"],
        "max_drop": max_drop,
        "champion_live": champion_live,
        "previous_live": previous_live,
        "relative_worse": rel,
        "worse": rel > max_drop,
    }


def with_rollback(champion_live: float, previous_live: float, *, drifted: bool = False) -> MonitorDecision:
    """The decision on a champion promoted recently, with the previous one on the same labels."""
    return decide(
        make_cfg(),
        as_of=AS_OF,
        champion=champion(),
        drift=drift(drifted),
        performance=perf(champion_live),
        rollback=rollback_facts(champion_live, previous_live),
    )


def test_a_champion_worse_than_the_one_it_replaced_is_rolled_back_before_any_retrain():
    from retrain_lib.pipeline.decision import ROLLBACK

    d = with_rollback(0.60, 0.80, drifted=True)
    assert d.action == ROLLBACK and d.rollback == {"from": "3", "to": "2"}
    assert "25.0% worse" in d.reasons[0] and "v2" in d.reasons[0]
    assert signal(d, "rollback").triggered is True


def test_both_models_bad_is_a_retrain_not_a_rollback():
    # concept drift: the new champion is as bad as the old one on the same labels
    d = with_rollback(0.60, 0.61)
    assert d.action == RETRAIN
    assert signal(d, "rollback").triggered is False


def test_a_champion_worse_than_a_previous_that_is_bad_too_is_a_retrain_not_a_rollback():
    # after a change: the new champion learnt two weekend days and does worse on a weekday than
    # the old one, but the old one is far below the healthy level too; going back to it does not
    # help, a retrain on the days since does
    d = with_rollback(0.60, 0.70)
    assert d.action == RETRAIN
    assert signal(d, "rollback").triggered is False
    assert any("no rollback" in r and "v2 roc_auc 0.7000 is past the limit" in r for r in d.reasons), d.reasons
    # the same champion against a previous still at the healthy level is rolled back
    back = with_rollback(0.60, 0.79)
    assert back.action == ROLLBACK


def test_rollback_facts_without_a_comparison_do_not_decide():
    d = decide(
        make_cfg(),
        as_of=AS_OF,
        champion=champion(),
        drift=drift(False),
        performance=perf(0.79),
        rollback={"metric": "roc_auc", "reason": "only 12 matured labels"},
    )
    assert d.action == HEALTHY and all(s.signal != "rollback" for s in d.signals)


def serving(requests=500, errors=0, p95=8.0, max_error_rate=0.05, max_p95=None, previous="2", **live) -> dict:
    out = {
        "source": "prediction log",
        "window": ["2026-11-26T10:00:00+00:00", "2026-11-26T11:00:00+00:00"],
        "champion": "3",
        "previous": previous,
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests,
        "p95_latency_ms": p95,
        "min_requests": 100,
        "max_error_rate": max_error_rate,
        "max_p95_latency_ms": max_p95,
        "metric": "roc_auc",
        "max_drop": 0.05,
        "labels": 0,
        "min_labels": 200,
    }
    if live:
        rel = (live["previous_live"] - live["champion_live"]) / live["previous_live"]
        out.update(labels=400, relative_worse=rel, worse=rel > 0.05, **live)
    return out


@pytest.mark.parametrize(
    ("facts", "why"),
    [
        (serving(errors=40), "error rate 8.0% of the champion's 500 requests in the last 60 min (limit 5.0%)"),
        (serving(p95=250.0, max_p95=100.0), "p95 latency 250.0 ms over the last 60 min (limit 100 ms)"),
        (
            serving(champion_live=0.55, previous_live=0.80),
            "roc_auc 0.5500 on 400 labelled live requests vs previous-champion v2 0.8000 on the same requests: 31.2% worse",
        ),
    ],
)
def test_live_serving_past_a_limit_rolls_back(facts, why):
    from retrain_lib.pipeline.decision import ROLLBACK

    d = decide(make_cfg(), as_of=AS_OF, champion=champion(), drift=drift(False), performance=perf(0.79), serving=facts)
    assert d.action == ROLLBACK and d.rollback == {"from": "3", "to": "2"}
    assert why in d.reasons[0]
    assert signal(d, "serving").triggered is True


@pytest.mark.parametrize(
    "facts",
    [
        serving(errors=20),  # 4% < 5%
        serving(requests=50, errors=25),  # too few requests to judge
        serving(p95=250.0),  # no latency limit configured
        serving(champion_live=0.78, previous_live=0.80),  # 2.5% worse < 5%
        serving(errors=40, previous=None),  # nothing to go back to
    ],
)
def test_live_serving_within_limits_or_unjudgeable_does_not_roll_back(facts):
    d = decide(make_cfg(), as_of=AS_OF, champion=champion(), drift=drift(False), performance=perf(0.79), serving=facts)
    assert d.action == HEALTHY
    assert signal(d, "serving").triggered is (bool(facts["previous"] is None))


def _adaptive_cfg() -> ModelConfig:
    cfg = make_cfg({"false_alarm_rate": 0.001, "min_effect": 0.02}, {"min_retrain_interval_days": 1})
    return cfg.model_copy(update={"adaptation": Adaptation()})


def _armed_perf(live: float = 0.74) -> dict:
    test = {
        "metric": "roc_auc",
        "live": live,
        "baseline": 0.83,
        "drop": 0.83 - live,
        "live_se": 0.01,
        "baseline_se": 0.004,
        "z": 8.0,
        "z_limit": 3.09,
        "rows": 2000,
        "false_alarm_rate": 0.001,
        "min_effect": 0.02,
        "significant": True,
    }
    return {
        "metric": "roc_auc",
        "live": live,
        "baseline": 0.83,
        "labels": 2000,
        "segments": [],
        "baseline_source": "healthy level (armed 2026-02-12)",
        "test": test,
    }


def _regime_champion(until: str):
    return SimpleNamespace(
        version="4",
        tags={
            "trained_as_of": "2026-02-13",
            "data.end": "2026-02-12",
            "adaptation.change_day": "2026-02-09",
            "adaptation.labelled_until": until,
        },
    )


def test_follow_up_retrains_when_the_days_since_the_change_have_doubled():
    cfg = _adaptive_cfg()
    # learnt from 2 days (02-09, 02-10); on 02-15 the labels of 02-09..02-12 (4 days) have matured
    d = decide(
        cfg, as_of=dt.date(2026, 2, 15), champion=_regime_champion("2026-02-10"), drift=None, performance=_armed_perf()
    )
    assert d.action == RETRAIN and signal(d, "follow_up").triggered
    # the armed level's drop is the follow-up's business, not a trigger of its own
    assert not signal(d, "performance").triggered
    assert any(r.startswith("follow-up:") for r in d.reasons)


def test_an_armed_drop_waits_for_the_next_follow_up():
    d = decide(
        _adaptive_cfg(),
        as_of=dt.date(2026, 2, 14),
        champion=_regime_champion("2026-02-10"),
        drift=None,
        performance=_armed_perf(),
    )
    assert d.action == HEALTHY and not d.throttled
    assert any("waiting for the follow-up at 4 matured day(s)" in r for r in d.reasons)
    # without a regime (a champion not trained after a change) the armed drop retrains
    plain = SimpleNamespace(version="4", tags={"trained_as_of": "2026-02-01", "data.end": "2026-02-01"})
    assert (
        decide(
            _adaptive_cfg(), as_of=dt.date(2026, 2, 14), champion=plain, drift=None, performance=_armed_perf()
        ).action
        == RETRAIN
    )


def test_a_retrain_without_a_model_since_the_deployment_ends_the_follow_ups():
    from retrain_lib.pipeline.adaptation import Backoff

    missed = Backoff(1, "2026-02-15", 1, False, ["2026-02-15"])
    d = decide(
        _adaptive_cfg(),
        as_of=dt.date(2026, 2, 17),
        champion=_regime_champion("2026-02-10"),
        drift=None,
        performance=None,
        backoff=missed,
    )
    assert d.action == HEALTHY
    assert signal(d, "follow_up").detail["stopped_by_no_gain"]


def test_drift_alone_with_labels_deciding_rebases_the_reference_to_the_drifted_windows_last_day():
    # the first days of a window that just drifted may be from before the shift: a reference
    # holding them would see the same shift again as the next windows fill with shifted days
    cfg = make_cfg().model_copy(update={"adaptation": Adaptation()})
    d = decide(
        cfg,
        as_of=AS_OF,
        champion=champion(),
        drift={**drift(True), "current_window": ["2026-02-08", "2026-02-10"]},
        performance=perf(0.80),
    )
    assert d.action == HEALTHY
    assert d.rebase == {
        "window": ["2026-02-08", "2026-02-10"],
        "reference": ["2026-02-10", "2026-02-10"],
        "champion_version": "3",
    }
    assert "drift reference rebased to 2026-02-10" in d.reasons[0], d.reasons
