"""Data validation (Great Expectations), quarantine and the Evidently drift report.

Expected counts, shares and rows are computed with pandas from the hand-made frames, never
taken from the code under test. Great Expectations and Evidently are slow to import, so the
expectations run as few times as possible (module-scoped fixtures)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain_lib.core.config import ModelConfig, check_model_file

AS_OF = dt.date(2026, 3, 10)


def model(validation: dict | None = None, **overrides) -> ModelConfig:
    raw = {
        "name": "shop",
        "owner": "t@example.com",
        "task": "classification",
        "data": {"path": "shop", "id_column": "order_id", "timestamp_column": "ts"},
        "features": {"target": "churned", "numeric": ["income", "age"], "categorical": ["region", "store"]},
        "training": {"estimator": "sklearn.linear_model.LogisticRegression"},
        "validation": validation,
    }
    raw.update(overrides)
    return ModelConfig.model_validate(raw)


def frame(n: int = 10) -> pd.DataFrame:
    """``n`` clean rows on AS_OF, the last one at 22:00."""
    ts = pd.date_range(dt.datetime.combine(AS_OF, dt.time(8)), dt.datetime.combine(AS_OF, dt.time(22)), periods=n)
    return pd.DataFrame(
        {
            "order_id": [f"o{i:03d}" for i in range(n)],
            "ts": ts,
            "income": np.linspace(1000.0, 9000.0, n),
            "age": np.arange(20, 20 + n, dtype=float),
            "region": ["north", "south"] * (n // 2),
            "store": ["a"] * n,
            "churned": [0.0, 1.0] * (n // 2),
        }
    )


# -----------------------------------------------------------------------------------------
# Config section
# -----------------------------------------------------------------------------------------

VALIDATION_YAML = """\
validation:
  mostly: 0.99
  not_null:
    - tenure
    - {column: monthly_spend, mostly: 0.9}
  between:
    tenure: {min: 0, max: 600}
    churned: {min: 0, max: 1}
  in_set:
    plan: [basic, pro]
    region: {values: [eu, us], mostly: 0.95}
  unique: [customer_id]
  row_count: {min: 10, max: 5000}
  exact_columns: true
  dtypes: {plan: string}
  freshness_hours: 6
"""


def write_model(tmp_path: Path, base: str, section: str) -> tuple[Path, str]:
    text = base + "\n" + section
    path = tmp_path / "churn_risk.yaml"
    path.write_text(text)
    return path, text


def line_of(text: str, needle: str) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on {len(hits)} lines"
    return hits[0]


def test_a_good_validation_section_loads_in_its_normal_form(tmp_path, retrain_cfg_model_yaml):
    path, _ = write_model(tmp_path, retrain_cfg_model_yaml, VALIDATION_YAML)
    cfg, problems = check_model_file(path)
    assert problems == []
    v = cfg.validation
    assert [(r.column, r.mostly) for r in v.not_null] == [("tenure", None), ("monthly_spend", 0.9)]
    assert v.in_set["plan"].values == ["basic", "pro"] and v.in_set["plan"].mostly is None
    assert v.in_set["region"].mostly == 0.95
    assert (v.row_count.min, v.row_count.max) == (10, 5000)
    assert cfg.expected_dtypes() == {
        "event_time": "datetime",
        "tenure": "numeric",
        "monthly_spend": "numeric",
        "support_calls": "numeric",
        "plan": "string",
    }
    assert cfg.columns == [
        "customer_id",
        "event_time",
        "tenure",
        "monthly_spend",
        "support_calls",
        "plan",
        "region",
        "churned",
    ]


def test_a_config_without_the_section_has_no_expectations(retrain_cfg_model_yaml, tmp_path):
    path = tmp_path / "churn_risk.yaml"
    path.write_text(retrain_cfg_model_yaml)
    cfg, problems = check_model_file(path)
    assert problems == [] and cfg.validation is None and cfg.expected_dtypes() == {}


@pytest.mark.parametrize(
    ("old", "new", "field", "needle", "hint"),
    [
        (
            "    tenure: {min: 0, max: 600}",
            "    tenrue: {min: 0, max: 600}",
            "validation.between.tenrue",
            "tenrue:",
            "did you mean 'tenure'?",
        ),
        (
            "    - {column: monthly_spend, mostly: 0.9}",
            "    - {column: monthly_spnd, mostly: 0.9}",
            "validation.not_null[1]",
            "monthly_spnd",
            "did you mean 'monthly_spend'?",
        ),
        (
            "  unique: [customer_id]",
            "  unique: [customer]",
            "validation.unique[0]",
            "unique:",
            "did you mean 'customer_id'?",
        ),
        ("    plan: [basic, pro]", "    plam: [basic, pro]", "validation.in_set.plam", "plam:", "did you mean 'plan'?"),
        (
            "  dtypes: {plan: string}",
            "  dtypes: {regoin: string}",
            "validation.dtypes.regoin",
            "regoin",
            "did you mean 'region'?",
        ),
    ],
)
def test_a_misspelt_column_is_reported_with_its_line_and_a_suggestion(
    tmp_path, retrain_cfg_model_yaml, old, new, field, needle, hint
):
    path, text = write_model(tmp_path, retrain_cfg_model_yaml, VALIDATION_YAML.replace(old, new))
    cfg, problems = check_model_file(path)
    assert cfg is None
    [problem] = [p for p in problems if p.field == field]
    assert "is not a declared column" in problem.reason and hint in problem.reason
    assert problem.line == line_of(text, needle)
    assert "customer_id" in problem.fix  # the fix lists the declared columns


@pytest.mark.parametrize(
    ("old", "new", "field", "reason", "fix"),
    [
        (
            "  row_count: {min: 10, max: 5000}",
            "  row_count: {min: lots, max: 5000}",
            "validation.row_count.min",
            "valid integer",
            "whole number",
        ),
        (
            "  exact_columns: true",
            "  exact_columns: maybe",
            "validation.exact_columns",
            "valid boolean",
            "true or false",
        ),
        (
            "  dtypes: {plan: string}",
            "  dtypes: {plan: text}",
            "validation.dtypes.plan",
            "'text' is not allowed",
            "numeric",
        ),
        ("  freshness_hours: 6", "  freshness_hours: -1", "validation.freshness_hours", "greater than 0", ""),
        (
            "  freshness_hours: 6",
            "  freshnes_hours: 6",
            "validation.freshnes_hours",
            "did you mean 'freshness_hours'?",
            "remove it",
        ),
        (
            "    tenure: {min: 0, max: 600}",
            "    tenure: {min: 700, max: 600}",
            "validation.between.tenure",
            "min (700) is greater than max (600)",
            "",
        ),
        ("    - tenure\n", "    - 5\n", "validation.not_null", "must be a column name or a mapping", ""),
    ],
)
def test_wrong_types_and_values_are_reported_with_their_line(
    tmp_path, retrain_cfg_model_yaml, old, new, field, reason, fix
):
    section = VALIDATION_YAML.replace(old, new)
    assert section != VALIDATION_YAML
    path, text = write_model(tmp_path, retrain_cfg_model_yaml, section)
    cfg, problems = check_model_file(path)
    assert cfg is None
    [problem] = [p for p in problems if p.field == field]
    assert reason in problem.reason and fix in problem.fix
    key = field.split(".")[-1]
    assert problem.line is not None and problem.line >= line_of(text, "validation:")
    if key in text:
        assert key in text.splitlines()[problem.line - 1] or problem.line == line_of(text, "not_null:")


def test_column_kinds_are_checked_across_fields(tmp_path, retrain_cfg_model_yaml):
    section = (
        VALIDATION_YAML.replace(
            "    tenure: {min: 0, max: 600}",
            "    tenure: {min: 0, max: 600}\n    plan: {min: 1}\n    event_time: {max: 3}",
        )
        .replace("    - tenure\n", "    - tenure\n    - churned\n")
        .replace("  dtypes: {plan: string}", "  dtypes: {plan: string, tenure: string}")
    )
    assert section != VALIDATION_YAML
    path, text = write_model(tmp_path, retrain_cfg_model_yaml, section)
    _, problems = check_model_file(path)
    found = {p.field: p for p in problems}
    assert "between needs a numeric column" in found["validation.between.plan"].reason
    assert "in_set" in found["validation.between.plan"].fix
    assert "datetimes" in found["validation.between.event_time"].reason
    assert "freshness_hours" in found["validation.between.event_time"].fix
    assert "missing until its label arrives" in found["validation.not_null[1]"].reason
    assert found["validation.not_null[1]"].line == line_of(text, "- churned")
    assert "contradicts" in found["validation.dtypes.tenure"].reason
    assert "validation.between.tenure" not in found  # the dtype conflict is reported once


# -----------------------------------------------------------------------------------------
# validate_frame: every expectation kind, passing and failing
# -----------------------------------------------------------------------------------------

FULL = {
    "not_null": ["income", {"column": "age", "mostly": 0.5}],
    "between": {"income": {"min": 0, "max": 10_000_000}, "age": {"min": 18, "max": 120}},
    "in_set": {"region": ["north", "south"], "churned": [0, 1]},
    "unique": ["order_id"],
    "row_count": {"min": 3, "max": 100},
    "exact_columns": True,
    "dtypes": {"region": "string"},
    "freshness_hours": 6,
}


@pytest.fixture(scope="module")
def clean_report():
    from retrain_lib.quality.validation import validate_frame

    return validate_frame(model(FULL), frame(), as_of=AS_OF, days=2)


@pytest.fixture(scope="module")
def bad():
    """A frame that breaks one expectation of every kind, and its report."""
    from retrain_lib.quality.validation import validate_frame

    df = frame(20)
    df.loc[[3, 7], "income"] = [-5.0, -12.0]
    df.loc[[4, 5, 6], "income"] = np.nan
    df.loc[[2], "age"] = np.nan
    df.loc[11, "region"] = "mars"
    df.loc[13, "order_id"] = df.loc[12, "order_id"]
    df["extra"] = 1
    df["__label_known"] = True  # internal column: ignored
    as_of = AS_OF + dt.timedelta(days=1)  # the data is a day old: not fresh
    cfg = model({**FULL, "row_count": {"min": 15, "max": 100}, "dtypes": {"store": "numeric"}})
    return df, validate_frame(cfg, df, as_of=as_of, days=2)


def by_check(report, check: str, column: str | None = None):
    hits = [r for r in report.results if r.check == check and (column is None or r.column == column)]
    assert len(hits) == 1, (check, column, hits)
    return hits[0]


def test_a_clean_frame_passes_every_expectation(clean_report):
    assert clean_report.success, clean_report.explain()
    assert clean_report.explain() == [] and clean_report.failed == []
    assert clean_report.rows == 10
    checks = [r.check for r in clean_report.results]
    # every kind is there, in the config's order: table first, then columns, freshness last
    assert checks[:2] == ["exact_columns", "row_count"] and checks[-1] == "freshness_hours"
    assert {"dtypes", "not_null", "unique", "between", "in_set"} <= set(checks)
    dtypes = {r.column: r.note for r in clean_report.results if r.check == "dtypes"}
    assert dtypes == {"ts": "datetime", "income": "numeric", "age": "numeric", "region": "string"}
    assert by_check(clean_report, "row_count").observed_value == 10
    assert by_check(clean_report, "row_count").kwargs == {"min_value": 6, "max_value": 200}  # per day x 2 days
    summary = clean_report.summary()
    assert summary == {
        "success": True,
        "expectations": len(clean_report.results),
        "failed_expectations": 0,
        "failed": [],
    }


def test_between_names_the_offending_values_and_rows(bad):
    df, report = bad
    r = by_check(report, "between", "income")
    assert not r.success
    income = df["income"]
    expected = int((income < 0).sum())
    assert r.unexpected_count == expected == 2
    assert r.unexpected_percent == pytest.approx(100 * expected / income.notna().sum())
    assert r.partial_unexpected_list == [-5.0, -12.0]
    assert [row["order_id"] for row in r.rows] == df.loc[income < 0, "order_id"].tolist()
    assert all(row["income"] < 0 for row in r.rows)
    assert "__label_known" not in r.rows[0]
    assert r.explain() == (
        "income: expect_column_values_to_be_between(min=0, max=10000000): 2 rows (12%) unexpected, e.g. -5.0, -12.0"
    )
    assert by_check(report, "between", "age").success


def test_not_null_counts_missing_rows_and_respects_mostly(bad):
    df, report = bad
    r = by_check(report, "not_null", "income")
    assert not r.success and r.unexpected_count == int(df["income"].isna().sum()) == 3
    assert r.unexpected_percent == pytest.approx(100 * 3 / len(df))
    assert [row["order_id"] for row in r.rows] == df.loc[df["income"].isna(), "order_id"].tolist()
    assert all(row["income"] is None for row in r.rows)
    age = by_check(report, "not_null", "age")
    assert age.success and age.unexpected_count == 1 and age.kwargs["mostly"] == 0.5
    assert "(within mostly)" in age.explain()


def test_in_set_and_unique_failures(bad):
    df, report = bad
    r = by_check(report, "in_set", "region")
    assert not r.success and r.unexpected_count == 1 and r.partial_unexpected_list == ["mars"]
    assert r.rows == [
        json.loads(df.drop(columns="__label_known").iloc[[11]].to_json(orient="records", date_format="iso"))[0]
    ]
    assert r.explain().endswith("1 row (5.0%) unexpected, e.g. 'mars'")
    assert by_check(report, "in_set", "churned").success
    u = by_check(report, "unique", "order_id")
    dup = df["order_id"].duplicated(keep=False)
    assert not u.success and u.unexpected_count == int(dup.sum()) == 2
    assert {row["order_id"] for row in u.rows} == set(df.loc[dup, "order_id"])


def test_table_expectations_report_what_they_observed(bad):
    df, report = bad
    rc = by_check(report, "row_count")
    assert not rc.success and rc.observed_value == len(df) == 20
    assert rc.kwargs == {"min_value": 30, "max_value": 200}
    assert "15..100 per day x 2 day(s)" in rc.explain()
    cols = by_check(report, "exact_columns")
    assert not cols.success and cols.details == {"unexpected": ["extra"], "missing": []}
    assert "unexpected column(s) ['extra']" in cols.explain()


def test_dtypes_compare_the_column_type(bad):
    _, report = bad
    store = by_check(report, "dtypes", "store")  # strings where the config says numeric
    assert not store.success and store.unexpected_count == 20
    assert "type=numeric" in store.explain()
    assert by_check(report, "dtypes", "income").success
    assert by_check(report, "dtypes", "ts").success


def test_freshness_compares_the_latest_timestamp_with_the_end_of_the_day(bad, clean_report):
    df, report = bad
    stale = by_check(report, "freshness_hours")
    latest = df["ts"].max()
    assert not stale.success
    assert pd.Timestamp(stale.observed_value) == latest
    day_end = dt.datetime.combine(AS_OF + dt.timedelta(days=2), dt.time())
    assert pd.Timestamp(stale.kwargs["min_value"]) == pd.Timestamp(day_end - dt.timedelta(hours=6))
    assert pd.Timestamp(stale.kwargs["max_value"]) == pd.Timestamp(day_end)
    assert "freshness_hours 6" in stale.explain()
    assert by_check(clean_report, "freshness_hours").success  # last row at 22:00, within 6 h of midnight


def test_freshness_fails_just_outside_the_window():
    from retrain_lib.quality.validation import validate_frame

    df = frame(4)
    df["ts"] = pd.to_datetime([f"{AS_OF} 10:00", f"{AS_OF} 12:00", f"{AS_OF} 13:00", f"{AS_OF} 17:59"])
    cfg = model({"freshness_hours": 6, "dtypes_from_features": False})
    report = validate_frame(cfg, df, as_of=AS_OF)
    [r] = report.results
    assert not r.success and r.observed_value.startswith(f"{AS_OF}T17:59")
    df.loc[3, "ts"] = pd.Timestamp(f"{AS_OF} 18:00")
    assert validate_frame(cfg, df, as_of=AS_OF).success
    df["ts"] = df["ts"].dt.tz_localize("Europe/Berlin")  # 18:00 in Berlin is 17:00 UTC
    assert not validate_frame(cfg, df, as_of=AS_OF).success


def test_the_failed_report_lists_every_failure_and_serialises(bad):
    _, report = bad
    assert not report.success
    failed = {(r.check, r.column) for r in report.failed}
    assert failed == {
        ("between", "income"),
        ("not_null", "income"),
        ("in_set", "region"),
        ("unique", "order_id"),
        ("row_count", None),
        ("exact_columns", None),
        ("dtypes", "store"),
        ("freshness_hours", "ts"),
    }
    assert len(report.explain()) == len(failed)
    data = json.loads(json.dumps(report.to_dict()))  # strict JSON: no NaN, no timestamps
    assert data["failed_expectations"] == len(failed) and data["success"] is False
    assert data["results"][0]["explain"] == report.results[0].explain()


# -----------------------------------------------------------------------------------------
# Quarantine
# -----------------------------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def credit_window(tmp_path):
    from retrain_lib.core.config import load_model_config
    from retrain_lib.store.data import load_window
    from retrain_lib.tools.simulate import simulate

    cfg = load_model_config(Path(__file__).resolve().parents[2] / "configs" / "models" / "credit_default.yaml")
    root = tmp_path / "data"
    simulate(cfg, root, days=4, rows_per_day=150, seed=3, start=dt.date(2026, 1, 1))
    bad_day = root / "credit_default" / "2026-01-03.parquet"
    part = pd.read_parquet(bad_day)
    part.loc[:4, "income"] = -1.0
    part.to_parquet(bad_day, index=False)
    window = load_window(cfg, root, dt.date(2026, 1, 1), dt.date(2026, 1, 4), as_of=dt.date(2026, 1, 4))
    return cfg, root, window


def test_quarantine_copies_the_batch_and_leaves_the_sources_alone(credit_window, tmp_path):
    from retrain_lib.quality.validation import quarantine_batch, validate_window

    cfg, root, window = credit_window
    report = validate_window(cfg, window)
    assert not report.success
    sources = {Path(f): (digest(Path(f)), os.stat(f).st_mtime_ns) for f in window.files}
    state = tmp_path / "state"
    dest = quarantine_batch(
        cfg,
        window,
        data_root=root,
        state_dir=state,
        report=report,
        problems=["a pre-check problem", *report.explain()],
        extra={"actor": "test"},
    )
    assert dest == state / "quarantine" / "credit_default" / "2026-01-04"
    for src, (sha, mtime) in sources.items():
        copy = dest / src.relative_to(root)
        assert copy.is_file() and digest(copy) == sha
        assert src.is_file() and digest(src) == sha and os.stat(src).st_mtime_ns == mtime  # untouched
    assert len(list(root.rglob("*.parquet"))) == 4 + len(list((root / "credit_default" / "labels").iterdir()))
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["fingerprint"] == window.fingerprint and manifest["actor"] == "test"
    assert manifest["window"] == ["2026-01-01", "2026-01-04"]
    assert manifest["problems"][0] == "a pre-check problem"
    [failure] = manifest["failed"]
    assert failure["check"] == "between" and failure["column"] == "income"
    assert failure["unexpected_count"] == int((window.frame["income"] < 0).sum()) == 5
    assert len(failure["rows"]) == 5 and all(row["income"] == -1.0 for row in failure["rows"])
    assert sorted(f["source"] for f in manifest["files"]) == sorted(str(Path(f).resolve()) for f in window.files)

    # Again for the same data: the same place, nothing new.
    assert quarantine_batch(cfg, window, data_root=root, state_dir=state, report=report) == dest
    assert sorted(p.name for p in dest.parent.iterdir()) == ["2026-01-04"]


def test_a_quarantine_of_other_data_for_the_same_day_keeps_the_first(credit_window, tmp_path):
    from retrain_lib.quality.validation import quarantine_batch
    from retrain_lib.store.data import Window

    cfg, root, window = credit_window
    state = tmp_path / "state"
    first = quarantine_batch(cfg, window, data_root=root, state_dir=state, problems=["x"])
    remote = Window(
        window.frame,
        window.start,
        window.end,
        window.as_of,
        ("s3://bucket/credit/2026-01-04.parquet",),
        digest="remote0123456789",
    )
    second = quarantine_batch(cfg, remote, data_root=root, state_dir=state, problems=["y"])
    assert second == first
    kept = first.with_name(f"2026-01-04.{window.fingerprint}")
    assert json.loads((kept / "manifest.json").read_text())["problems"] == ["x"]
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["remote_sources"] == ["s3://bucket/credit/2026-01-04.parquet"] and manifest["files"] == []
    rows = pd.read_parquet(manifest["batch"])  # rows of a remote source are kept as read
    assert len(rows) == len(window.frame) and "__label_known" not in rows.columns


# -----------------------------------------------------------------------------------------
# Monitor side: failures are recorded, never raised
# -----------------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, cfg):
        self.cfg = cfg
        self.name = cfg.name


def test_a_crashing_validation_or_report_does_not_stop_the_monitor(credit_window, monkeypatch, tmp_path):
    from retrain_lib.pipeline import monitor_run
    from retrain_lib.quality import validation
    from retrain_lib.store import reports

    cfg, _, window = credit_window
    summary, report = monitor_run._monitor_validation(_Ctx(cfg), window)
    assert summary["success"] is False and summary["failed_expectations"] == len(report.failed) == 1
    assert summary["failed"] == report.explain() and summary["window"] == ["2026-01-01", "2026-01-04"]

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(validation, "validate_window", boom)
    monkeypatch.setattr(reports, "drift_html_report", boom)
    assert monitor_run._monitor_validation(_Ctx(cfg), window) == (
        {"success": None, "error": "RuntimeError: boom"},
        None,
    )
    assert monitor_run._drift_html(_Ctx(cfg), window, window, tmp_path / "r.html") == (None, "RuntimeError: boom")
    assert monitor_run._monitor_validation(_Ctx(model()), window) == (None, None)  # no section: nothing runs


# -----------------------------------------------------------------------------------------
# Evidently drift report
# -----------------------------------------------------------------------------------------


def test_the_drift_report_uses_the_decision_s_methods_and_thresholds():
    from retrain_lib.stats.drift import drift_for_config
    from retrain_lib.store.reports import column_tests

    cfg = model(
        drift={
            "method": "psi",
            "threshold": 0.15,
            "categorical_method": "chi2",
            "features": {"income": {"method": "ks", "threshold": 0.01}, "region": {"method": "js"}},
            "exclude": ["store"],
        }
    )
    df = frame(40)
    decided = {f.name: (f.kind, f.method, f.threshold) for f in drift_for_config(cfg, df, df).features}
    assert column_tests(cfg) == decided
    assert column_tests(cfg) == {
        "income": ("numeric", "ks", 0.01),
        "age": ("numeric", "psi", 0.15),
        "region": ("categorical", "js", 0.1),
    }


def test_the_drift_report_of_a_calibrated_config_uses_the_thresholds_the_check_decided():
    """``threshold: auto`` is resolved per check from the day's sample sizes: the report takes
    the decided thresholds, and without them says so instead of failing on float('auto')."""
    from retrain_lib.stats.drift import drift_for_config
    from retrain_lib.store.reports import column_tests

    cfg = model(drift={"threshold": "auto", "features": {"income": {"method": "ks"}}, "exclude": ["store"]})
    df = frame(40)
    decided = {f.name: f.threshold for f in drift_for_config(cfg, df, df).features}
    tests = column_tests(cfg, decided)
    assert {c: t for c, (_, _, t) in tests.items()} == decided
    assert tests["income"][1] == "ks" and all(isinstance(t, float) for t in decided.values())
    with pytest.raises(ValueError, match="'auto'.*pass the thresholds"):
        column_tests(cfg)


def test_the_monitor_s_drift_report_takes_the_tests_from_the_check_itself():
    from retrain_lib.stats.drift import drift_for_config
    from retrain_lib.store.reports import decided_tests

    cfg = model(
        drift={
            "threshold": "auto",
            "categorical_method": "chi2",
            "features": {"income": {"method": "ks"}},
            "exclude": ["store"],
        }
    )
    df = frame(40)
    report = drift_for_config(cfg, df, df.iloc[::2])
    tests = decided_tests(report.to_dict()["features"])
    assert tests == {f.name: (f.kind, f.method, f.threshold) for f in report.features}
    assert tests["income"][:2] == ("numeric", "ks") and tests["region"][:2] == ("categorical", "chi2")


def test_drift_html_report_writes_an_evidently_page(tmp_path):
    from retrain_lib.store.reports import drift_html_report

    rng = np.random.default_rng(0)
    cfg = model(drift={"features": {"income": {"method": "ks", "threshold": 0.01}}, "exclude": ["store"]})

    def sample(n: int, shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "income": rng.normal(5000 + shift, 500, n),
                "age": rng.normal(40, 9, n),
                "region": rng.choice(["north", "south"], n),
                "store": "a",
            }
        )

    path = drift_html_report(cfg, sample(300, 0), sample(200, 800), tmp_path / "out" / "drift_report.html")
    assert path == tmp_path / "out" / "drift_report.html" and path.stat().st_size > 10_000
    html = path.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    for name in ("income", "age", "region"):
        assert f'"column_name": "{name}"' in html
    assert '"column_name": "store"' not in html  # excluded from drift, as in the decision
    assert "K-S p_value" in html and "PSI" in html
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="lacks feature"):
        drift_html_report(cfg, sample(10, 0).drop(columns="age"), sample(10, 0), tmp_path / "x.html")
