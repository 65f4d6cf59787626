"""The ``lifecycle:`` config block (its errors, one readable problem each, with the line) and the
date logic of a retirement (:mod:`retrain_lib.pipeline.retirement_plan`): pure, records and
days written out here."""

from __future__ import annotations

import datetime as dt

import pytest

from retrain_lib.core.config import check_model_file
from retrain_lib.core.config_lifecycle import Lifecycle
from retrain_lib.pipeline.retirement_plan import plan_lifecycle, version_plans

D = dt.date


def _write(tmp_path, text: str):
    path = tmp_path / "churn_risk.yaml"
    path.write_text(text)
    return check_model_file(path)


def test_a_lifecycle_block_is_read_with_its_dates(tmp_path, retrain_cfg_model_yaml):
    cfg, problems = _write(
        tmp_path,
        retrain_cfg_model_yaml + "lifecycle:\n  deprecate_on: 2027-01-31\n  notice_days: 10\n  replacement: churn_v2\n",
    )
    assert problems == []
    assert cfg.lifecycle.deprecate_on == D(2027, 1, 31)
    assert cfg.lifecycle.notice_from() == D(2027, 1, 21)
    assert cfg.lifecycle.replacement == "churn_v2"
    # a quoted day is read as well; notice_days defaults to 30
    cfg, problems = _write(tmp_path, retrain_cfg_model_yaml + "lifecycle: {deprecate_on: '2027-01-31'}\n")
    assert problems == [] and cfg.lifecycle.notice_from() == D(2027, 1, 1)


def test_planning_a_retirement_does_not_change_the_config_hash(tmp_path, retrain_cfg_model_yaml):
    plain, _ = _write(tmp_path, retrain_cfg_model_yaml)
    planned, _ = _write(tmp_path, retrain_cfg_model_yaml + "lifecycle: {deprecate_on: 2027-01-31}\n")
    assert plain.config_hash() == planned.config_hash()


@pytest.mark.parametrize(
    ("block", "field", "reason"),
    [
        (
            "lifecycle:\n  deprecate_on: next month\n",
            "lifecycle.deprecate_on",
            "'next month' is not a day; write it as YYYY-MM-DD, e.g. deprecate_on: 2027-01-31",
        ),
        (
            "lifecycle:\n  deprecate_on: 2027-02-30\n",
            "lifecycle.deprecate_on",
            "'2027-02-30' is not a day; write it as YYYY-MM-DD",
        ),
        (
            "lifecycle:\n  notice_day: 30\n",
            "lifecycle.notice_day",
            "unknown field 'notice_day'; did you mean 'notice_days'?",
        ),
        ("lifecycle:\n  notice_days: -1\n", "lifecycle.notice_days", "Input should be greater than or equal to 0"),
        ("lifecycle:\n  replacement: Churn V2\n", "lifecycle.replacement", "String should match pattern"),
        ("lifecycle:\n  replacement: churn_risk\n", "lifecycle.replacement", "'churn_risk' cannot replace itself"),
    ],
)
def test_lifecycle_errors_name_the_field_and_line(tmp_path, retrain_cfg_model_yaml, block, field, reason):
    lines = retrain_cfg_model_yaml.count("\n")
    cfg, problems = _write(tmp_path, retrain_cfg_model_yaml + block)
    assert cfg is None
    assert [p.field for p in problems] == [field], problems
    assert reason in problems[0].reason, problems[0].reason
    assert problems[0].line == lines + 2  # the line of the field under `lifecycle:`


# -- the date logic --------------------------------------------------------------------------


def rec(event: str, as_of: str, **details) -> dict:
    return {"event": event, "as_of": as_of, "time": f"{as_of}T06:00:00+00:00", "details": details, "reason": ""}


PLANNED = Lifecycle(deprecate_on=D(2027, 1, 31), notice_days=30, replacement="churn_v2")


@pytest.mark.parametrize(
    ("day", "status", "days_left"),
    [
        (D(2026, 12, 31), "scheduled", 31),
        (D(2027, 1, 1), "deprecated", 30),  # notice_days before deprecate_on
        (D(2027, 1, 30), "deprecated", 1),
        (D(2027, 1, 31), "due", 0),  # the day itself
        (D(2027, 3, 1), "due", -29),
    ],
)
def test_a_config_plan_is_scheduled_then_deprecated_then_due(day, status, days_left):
    plan = plan_lifecycle("churn_risk", [], PLANNED, day)
    assert (plan.status, plan.days_left) == (status, days_left)
    assert (plan.retire_on, plan.notice_from, plan.source) == (D(2027, 1, 31), D(2027, 1, 1), "config")
    assert plan.replacement == "churn_v2" and not plan.recorded and not plan.notice_sent


def test_nothing_planned_is_active():
    assert plan_lifecycle("m", [], None, D(2027, 1, 1)).status == "active"
    assert plan_lifecycle("m", [], Lifecycle(notice_days=5), D(2027, 1, 1)).status == "active"


def test_the_notice_is_sent_once_per_planned_day():
    notice = [rec("deprecate", "2027-01-01", retire_on="2027-01-31", source="config")]
    notice.append(rec("deprecation_notice", "2027-01-01", retire_on="2027-01-31"))
    plan = plan_lifecycle("m", notice, PLANNED, D(2027, 1, 2))
    assert plan.status == "deprecated" and plan.recorded and plan.notice_sent
    # the config moves the day: a new deprecation, a new notice
    later = Lifecycle(deprecate_on=D(2027, 2, 28), notice_days=30)
    plan = plan_lifecycle("m", notice, later, D(2027, 2, 1))
    assert plan.retire_on == D(2027, 2, 28) and not plan.recorded and not plan.notice_sent


def test_a_plan_by_hand_wins_over_the_config():
    by_hand = [
        rec("deprecate", "2026-12-01", retire_on="2026-12-15", notice_from="2026-12-01", reason="old", source="by_hand")
    ]
    plan = plan_lifecycle("m", by_hand, PLANNED, D(2026, 12, 10))
    assert (plan.status, plan.retire_on, plan.reason, plan.source) == ("deprecated", D(2026, 12, 15), "old", "by_hand")
    assert plan_lifecycle("m", by_hand, PLANNED, D(2026, 12, 15)).status == "due"


def test_a_retire_record_is_retired_until_an_unretire():
    records = [rec("retire", "2027-01-31", reason="planned", replacement="churn_v2", aliases={"champion": "3"})]
    plan = plan_lifecycle("m", records, PLANNED, D(2027, 2, 5))
    assert (plan.status, plan.retired_on, plan.replacement) == ("retired", "2027-01-31", "churn_v2")
    assert plan.aliases == {"champion": "3"}
    assert "m is retired since 2027-01-31" in plan.explain() and "use churn_v2 instead" in plan.explain()
    records.append(rec("unretire", "2027-02-06", reason="still needed"))
    # the config's day was reached before the unretire: it is not applied again
    assert plan_lifecycle("m", records, PLANNED, D(2027, 2, 7)).status == "active"
    # a later day in the config is
    later = Lifecycle(deprecate_on=D(2027, 6, 30), notice_days=30)
    assert plan_lifecycle("m", records, later, D(2027, 6, 1)).status == "deprecated"


def test_versions_have_their_own_plans_and_the_config_plays_no_part():
    records = [
        rec("deprecate", "2027-01-01", version="2", retire_on="2027-01-10", notice_from="2027-01-01", source="by_hand"),
        rec("retire", "2027-01-02", version="1", reason="leak"),
        rec("retire", "2027-01-03", version="3", reason="bad"),
        rec("unretire", "2027-01-04", version="3", reason="fine after all"),
    ]
    plans = {p.version: p.status for p in version_plans("m", records, D(2027, 1, 10))}
    assert plans == {"1": "retired", "2": "due"}  # 3 is active again
    assert plan_lifecycle("m", records, None, D(2027, 1, 10)).status == "active"  # the model itself
