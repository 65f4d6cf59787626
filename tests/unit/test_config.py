"""Unit tests of retrain_lib.core.config: schema, loading, problem reports, safety, hashing."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from retrain_lib.core import config_yaml as config_mod
from retrain_lib.core.config import (
    ModelConfig,
    check_model_file,
    json_schema,
    load_model_config,
    load_model_configs,
)
from retrain_lib.core.config_platform import PlatformConfig, load_platform_config, platform_json_schema
from retrain_lib.core.config_problems import ConfigProblem
from retrain_lib.core.config_yaml import MAX_CONFIG_BYTES
from retrain_lib.core.errors import ConfigError, RetrainError

SHIPPED = {"credit_default": "classification", "daily_demand": "regression"}


# -----------------------------------------------------------------------------------------
# helpers (computed from the YAML text itself, never from the code under test)
# -----------------------------------------------------------------------------------------


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the sample"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line of ``text`` that contains ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on {len(hits)} lines"
    return hits[0]


def column_of(text: str, needle: str) -> int:
    line = text.splitlines()[line_of(text, needle) - 1]
    return line.index(needle) + 1


def write(directory: Path, filename: str, text: str | bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def by_field(problems: list[ConfigProblem]) -> dict[str, ConfigProblem]:
    fields = [p.field for p in problems]
    assert len(fields) == len(set(fields)), f"duplicate fields in {problems}"
    return {p.field: p for p in problems}


def rejected(path: Path, platform: PlatformConfig | None = None) -> list[ConfigProblem]:
    cfg, problems = check_model_file(path, platform)
    assert cfg is None, f"{path} was accepted"
    assert problems, "rejected without a problem"
    for p in problems:
        assert p.file == str(path)
        assert p.reason
    return problems


def all_text(problems: list[ConfigProblem]) -> str:
    return "\n".join(str(p) for p in problems)


# -----------------------------------------------------------------------------------------
# shipped examples and the base sample
# -----------------------------------------------------------------------------------------


def test_shipped_model_configs_validate_with_zero_problems(retrain_cfg_shipped_models_dir):
    result = load_model_configs(retrain_cfg_shipped_models_dir)
    assert result.problems == []
    assert result.ok
    assert sorted(result.models) == sorted(SHIPPED)
    for name, loaded in result.models.items():
        assert loaded.path.stem == name
        assert loaded.config.name == name
        assert loaded.config.task == SHIPPED[name]
        assert loaded.config.training.estimator.startswith("sklearn.")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_file_loads_alone(retrain_cfg_shipped_models_dir, name):
    path = retrain_cfg_shipped_models_dir / f"{name}.yaml"
    cfg, problems = check_model_file(path)
    assert problems == []
    assert isinstance(cfg, ModelConfig)
    assert load_model_config(path) == cfg


def test_shipped_platform_config_loads(retrain_cfg_project_root):
    platform = load_platform_config(retrain_cfg_project_root / "configs" / "platform.yaml")
    assert platform.allowed_estimator_prefixes == ["sklearn."]
    assert load_platform_config(None) == PlatformConfig()
    assert load_platform_config(retrain_cfg_project_root / "no-such-platform.yaml") == PlatformConfig()


def test_sample_config_is_valid(tmp_path, retrain_cfg_model_yaml):
    path = write(tmp_path, "churn_risk.yaml", retrain_cfg_model_yaml)
    cfg, problems = check_model_file(path)
    assert problems == []
    assert cfg.name == "churn_risk"
    assert cfg.features.all == ["tenure", "monthly_spend", "support_calls", "plan", "region"]
    assert cfg.deploy.canary_steps == [10, 50, 100]
    assert cfg.primary_metric == "roc_auc"
    assert cfg.dag_id("monitor") == "churn_risk__monitor"


# -----------------------------------------------------------------------------------------
# problem reports: several problems at once, with file, line, field, reason and fix
# -----------------------------------------------------------------------------------------


def test_misspelt_key_and_wrong_type_are_both_reported(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "  threshold: 0.2\n", "  treshold: 0.2\n")
    text = edit(text, "min_labels: 200", "min_labels: lots")
    path = write(tmp_path, "churn_risk.yaml", text)

    problems = by_field(rejected(path))
    assert set(problems) == {"drift.treshold", "performance.min_labels"}

    typo = problems["drift.treshold"]
    assert typo.file == str(path)
    assert typo.line == line_of(text, "treshold:")
    assert typo.column == column_of(text, "treshold:")
    assert "unknown field 'treshold'" in typo.reason
    assert "did you mean 'threshold'?" in typo.reason
    assert typo.fix and "threshold" in typo.fix

    wrong = problems["performance.min_labels"]
    assert wrong.file == str(path)
    assert wrong.line == line_of(text, "min_labels:")
    assert "'lots'" in wrong.reason
    assert "whole number" in wrong.fix

    rendered = str(typo)
    assert rendered.startswith(f"{path}:{typo.line}:{typo.column}: drift.treshold: ")
    assert "\n    fix: " in rendered
    assert typo.to_dict() == {
        "file": str(path),
        "line": typo.line,
        "column": typo.column,
        "field": "drift.treshold",
        "reason": typo.reason,
        "fix": typo.fix,
    }


def test_load_model_config_raises_config_error_with_every_problem(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "  threshold: 0.2\n", "  treshold: 0.2\n")
    text = edit(text, "min_labels: 200", "min_labels: lots")
    path = write(tmp_path, "churn_risk.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_model_config(path)
    assert isinstance(info.value, RetrainError) and isinstance(info.value, ValueError)
    assert {p.field for p in info.value.problems} == {"drift.treshold", "performance.min_labels"}
    assert "drift.treshold" in str(info.value) and "performance.min_labels" in str(info.value)


def test_missing_required_fields_are_reported(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "owner: ml-team@example.com\n", "")
    text = edit(text, "  id_column: customer_id\n", "")
    path = write(tmp_path, "churn_risk.yaml", text)

    problems = by_field(rejected(path))
    assert set(problems) == {"owner", "data.id_column"}
    for field, p in problems.items():
        assert "required" in p.reason
        assert field.split(".")[-1] in p.fix
    # a missing nested field points at its parent mapping
    assert problems["data.id_column"].line == line_of(text, "data:")


def test_empty_file_reports_every_required_top_level_field(tmp_path):
    path = write(tmp_path, "churn_risk.yaml", "# nothing yet\n")
    problems = rejected(path)
    assert {p.field for p in problems} == {"name", "owner", "task", "data", "features", "training"}
    assert all("required" in p.reason for p in problems)


@pytest.mark.parametrize(
    ("old", "new", "field", "suggestion"),
    [
        ("task: classification", "task: clasification", "task", "classification"),
        ("mode: canary", "mode: canry", "deploy.mode", "canary"),
        ("  method: psi\n", "  method: pis\n", "drift.method", "psi"),
        ("  format: parquet\n", "  format: parquett\n", "data.format", "parquet"),
    ],
)
def test_literal_errors_suggest_the_right_value(tmp_path, retrain_cfg_model_yaml, old, new, field, suggestion):
    text = edit(retrain_cfg_model_yaml, old, new)
    path = write(tmp_path, "churn_risk.yaml", text)
    problems = by_field(rejected(path))
    assert set(problems) == {field}
    p = problems[field]
    assert f"did you mean {suggestion!r}?" in p.reason
    assert p.line == line_of(text, new.strip())
    assert suggestion in p.fix


@pytest.mark.parametrize(
    ("old", "new", "field", "suggestion"),
    [
        ("{metric: roc_auc, min: 0.6}", "{metric: roc_auc, mni: 0.6}", "gates[0].mni", "min"),
        (
            "tenure: {method: ks, threshold: 0.01}",
            "tenure: {method: ks, treshold: 0.01}",
            "drift.features.tenure.treshold",
            "threshold",
        ),
        ("holdout_fraction: 0.25}", "holdout_fractoin: 0.25}", "training.split.holdout_fractoin", "holdout_fraction"),
        ("  max_drop: 0.05\n", "  max_dorp: 0.05\n", "performance.max_dorp", "max_drop"),
    ],
)
def test_unknown_nested_keys_suggest_the_field_of_their_own_section(
    tmp_path, retrain_cfg_model_yaml, old, new, field, suggestion
):
    text = edit(retrain_cfg_model_yaml, old, new)
    path = write(tmp_path, "churn_risk.yaml", text)
    problems = by_field(rejected(path))
    assert field in problems
    p = problems[field]
    assert f"did you mean {suggestion!r}?" in p.reason
    assert p.line == line_of(text, field.split(".")[-1] + ":")
    # the fix lists the keys of that section, not of the top level
    assert suggestion in p.fix and "owner" not in p.fix


def test_unknown_top_level_key_and_the_missing_one_are_both_reported(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "owner: ml-team", "ownr: ml-team")
    path = write(tmp_path, "churn_risk.yaml", text)
    problems = by_field(rejected(path))
    assert set(problems) == {"owner", "ownr"}
    assert "did you mean 'owner'?" in problems["ownr"].reason
    assert problems["ownr"].line == line_of(text, "ownr:")


def test_value_errors_in_list_items_name_the_index(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "numeric: [tenure,", "numeric: [17, tenure,")
    path = write(tmp_path, "churn_risk.yaml", text)
    problems = by_field(rejected(path))
    assert "features.numeric[0]" in problems
    assert problems["features.numeric[0]"].line == line_of(text, "numeric:")


# -----------------------------------------------------------------------------------------
# cross-field checks
# -----------------------------------------------------------------------------------------

CROSS_FIELD_CASES = {
    "gate metric of the other task": (
        "{metric: roc_auc, min: 0.6}",
        "{metric: rmse, min: 0.6}",
        "gates[0].metric: 'rmse' is not a classification metric",
    ),
    "performance metric of the other task": (
        "  metric: roc_auc\n  max_drop",
        "  metric: mae\n  max_drop",
        "performance.metric: 'mae' is not a classification metric",
    ),
    "feature both numeric and categorical": (
        "categorical: [plan, region]",
        "categorical: [plan, region, tenure]",
        "'tenure' is listed under both 'numeric' and 'categorical'",
    ),
    "target listed as a feature": (
        "categorical: [plan, region]",
        "categorical: [plan, region, churned]",
        "target 'churned' is also listed as a feature",
    ),
    "no features at all": (
        "  numeric: [tenure, monthly_spend, support_calls]\n  categorical: [plan, region]\n  segments: [plan]\n",
        "",
        "declare at least one feature",
    ),
    "drift.features names an undeclared feature": (
        "tenure: {method: ks",
        "tenur: {method: ks",
        "drift.features.tenur: 'tenur' is not a declared feature; did you mean 'tenure'?",
    ),
    "drift.exclude names an undeclared feature": (
        "  drift_share: 0.3\n",
        "  drift_share: 0.3\n  exclude: [regoin]\n",
        "drift.exclude[0]: 'regoin' is not a declared feature; did you mean 'region'?",
    ),
    "segment is not categorical": (
        "segments: [plan]",
        "segments: [tenure]",
        "features.segments[0]: segment 'tenure' is not a categorical feature",
    ),
    "numeric-only drift method on a categorical feature": (
        "tenure: {method: ks, threshold: 0.01}",
        "plan: {method: wasserstein}",
        "drift.features.plan.method: 'wasserstein' needs a numeric feature",
    ),
    "canary steps not increasing": (
        "canary_steps: [10, 50, 100]",
        "canary_steps: [10, 50, 50]",
        "canary_steps must increase strictly",
    ),
    "canary steps decreasing": (
        "canary_steps: [10, 50, 100]",
        "canary_steps: [50, 10, 100]",
        "canary_steps must increase strictly",
    ),
    "canary step above 100": (
        "canary_steps: [10, 50, 100]",
        "canary_steps: [10, 150]",
        "canary_steps must increase strictly",
    ),
    "canary step zero": (
        "canary_steps: [10, 50, 100]",
        "canary_steps: [0, 100]",
        "canary_steps must increase strictly",
    ),
    "gate min greater than max": (
        "{metric: roc_auc, min: 0.6}",
        "{metric: roc_auc, min: 0.9, max: 0.5}",
        "min (0.9) is greater than max (0.5)",
    ),
    "gate without a bound": ("{metric: roc_auc, min: 0.6}", "{metric: roc_auc}", "a gate needs at least one of"),
    "gate with both relative bounds": (
        "{metric: roc_auc, max_regression: 0.02}",
        "{metric: roc_auc, max_regression: 0.02, min_improvement: 0.01}",
        "either max_regression or min_improvement",
    ),
    "bad cron": ('monitor: "0 6 * * *"', 'monitor: "every morning"', "'every morning' is not a cron expression"),
    "estimator that is not an import path": (
        "estimator: sklearn.linear_model.LogisticRegression",
        "estimator: \"__import__('os').system\"",
        "is not an import path",
    ),
}


@pytest.mark.parametrize(("old", "new", "reason"), CROSS_FIELD_CASES.values(), ids=CROSS_FIELD_CASES.keys())
def test_cross_field_checks_reject(tmp_path, retrain_cfg_model_yaml, old, new, reason):
    path = write(tmp_path, "churn_risk.yaml", edit(retrain_cfg_model_yaml, old, new))
    problems = rejected(path)
    assert reason in all_text(problems)


def test_cross_field_problems_point_at_their_line_and_field(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "{metric: roc_auc, min: 0.6}", "{metric: rmse, min: 0.6}")
    text = edit(text, "segments: [plan]", "segments: [tenure]")
    problems = {p.field: p for p in rejected(write(tmp_path, "churn_risk.yaml", text))}
    lines = text.splitlines()
    gate_line = next(i for i, line in enumerate(lines, 1) if "{metric: rmse" in line)
    segment_line = next(i for i, line in enumerate(lines, 1) if "segments: [tenure]" in line)
    assert problems["gates[0].metric"].line == gate_line
    assert problems["features.segments[0]"].line == segment_line
    assert "roc_auc" in problems["gates[0].metric"].fix
    assert "features.categorical" in problems["features.segments[0]"].fix


def test_stratified_split_needs_classification(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "task: classification", "task: regression")
    text = edit(text, "segments: [plan]\n", "")
    text = edit(text, "  metric: roc_auc\n  max_drop", "  metric: rmse\n  max_drop")
    text = edit(text, "{metric: roc_auc, min: 0.6}", "{metric: r2, min: 0.6}")
    text = edit(text, "{metric: roc_auc, max_regression", "{metric: rmse, max_regression")
    ok_path = write(tmp_path / "ok", "churn_risk.yaml", text)
    assert check_model_file(ok_path)[1] == []  # a valid regression variant

    bad = edit(text, "split: {method: time", "split: {method: stratified")
    problems = rejected(write(tmp_path / "bad", "churn_risk.yaml", bad))
    assert "'stratified' needs a classification task" in all_text(problems)


def test_all_cross_field_problems_of_a_file_are_reported_together(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "{metric: roc_auc, min: 0.6}", "{metric: rmse, min: 0.6}")
    text = edit(text, "segments: [plan]", "segments: [tenure]")
    text = edit(text, "tenure: {method: ks", "tenur: {method: ks")
    report = all_text(rejected(write(tmp_path, "churn_risk.yaml", text)))
    assert "gates[0].metric: 'rmse'" in report
    assert "features.segments[0]: segment 'tenure'" in report
    assert "drift.features.tenur: " in report


@pytest.mark.parametrize(
    "estimator", ["os.system", "subprocess.Popen", "builtins.eval", "sklearnx.Model", "my_sklearn.linear_model.X"]
)
def test_estimator_outside_allowed_prefixes_is_rejected(tmp_path, retrain_cfg_model_yaml, estimator):
    text = edit(
        retrain_cfg_model_yaml,
        "estimator: sklearn.linear_model.LogisticRegression",
        f"estimator: {estimator}",
    )
    path = write(tmp_path, "churn_risk.yaml", text)
    problems = by_field(rejected(path))
    assert set(problems) == {"training.estimator"}
    p = problems["training.estimator"]
    assert repr(estimator) in p.reason and "outside the allowed estimator modules" in p.reason
    assert p.line == line_of(text, "estimator:")
    assert "allowed_estimator_prefixes" in p.fix
    assert load_model_configs(path).models == {}


def test_platform_can_allow_more_estimator_prefixes(tmp_path, retrain_cfg_model_yaml):
    text = edit(
        retrain_cfg_model_yaml, "estimator: sklearn.linear_model.LogisticRegression", "estimator: xgboost.XGBClassifier"
    )
    path = write(tmp_path, "churn_risk.yaml", text)
    assert check_model_file(path)[0] is None
    platform = PlatformConfig(allowed_estimator_prefixes=["sklearn.", "xgboost."])
    cfg, problems = check_model_file(path, platform)
    assert problems == [] and cfg.training.estimator == "xgboost.XGBClassifier"


def test_name_must_match_the_file_stem(tmp_path, retrain_cfg_model_yaml):
    path = write(tmp_path, "churn.yaml", retrain_cfg_model_yaml)
    problems = by_field(rejected(path))
    assert set(problems) == {"name"}
    p = problems["name"]
    assert "'churn_risk'" in p.reason and "churn.yaml" in p.reason
    assert p.line == line_of(retrain_cfg_model_yaml, "name: churn_risk")
    assert "churn_risk.yaml" in p.fix


@pytest.mark.parametrize("name", ["Churn", "9lives", "churn-risk", "x" * 64])
def test_name_must_be_a_lower_case_identifier(tmp_path, retrain_cfg_model_yaml, name):
    text = edit(retrain_cfg_model_yaml, "name: churn_risk", f"name: {name}")
    problems = by_field(rejected(write(tmp_path, f"{name}.yaml", text)))
    assert "name" in problems


def test_duplicate_model_names_across_two_directories(tmp_path, retrain_cfg_model_yaml):
    first = write(tmp_path / "team_a", "churn_risk.yaml", retrain_cfg_model_yaml)
    second = write(tmp_path / "team_b", "churn_risk.yaml", retrain_cfg_model_yaml)
    result = load_model_configs([tmp_path / "team_a", tmp_path / "team_b"])
    assert list(result.models) == ["churn_risk"]
    assert result.models["churn_risk"].path == first
    assert len(result.problems) == 1
    p = result.problems[0]
    assert p.file == str(second) and p.field == "name"
    assert "already used" in p.reason and str(first) in p.reason
    assert not result.ok


def test_duplicate_model_names_yaml_and_yml_in_one_directory(tmp_path, retrain_cfg_model_yaml):
    write(tmp_path, "churn_risk.yaml", retrain_cfg_model_yaml)
    write(tmp_path, "churn_risk.yml", retrain_cfg_model_yaml)
    result = load_model_configs(tmp_path)
    assert list(result.models) == ["churn_risk"]
    assert [p.field for p in result.problems] == ["name"]


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("  path: churn_risk ", "  path: /etc/churn ", "data.path"),
        ("  path: churn_risk ", "  path: ../../etc ", "data.path"),
        ("  path: churn_risk ", "  path: churn/../../secrets ", "data.path"),
        ("labels_path: churn_risk/labels", "labels_path: ../labels", "data.labels_path"),
        ("labels_path: churn_risk/labels", "labels_path: /var/labels", "data.labels_path"),
    ],
)
def test_data_paths_must_stay_inside_the_data_root(tmp_path, retrain_cfg_model_yaml, old, new, field):
    text = edit(retrain_cfg_model_yaml, old, new)
    problems = by_field(rejected(write(tmp_path, "churn_risk.yaml", text)))
    assert set(problems) == {field}
    assert "relative" in problems[field].reason and "'..'" in problems[field].reason
    assert problems[field].line == line_of(text, new.strip())


# -----------------------------------------------------------------------------------------
# safety of the YAML reader
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        '!!python/object/apply:os.system ["touch {marker}"]\n',
        'name: !!python/object/apply:os.system ["touch {marker}"]\n',
        "tags:\n  team: !!python/object/apply:subprocess.call [[touch, {marker}]]\n",
        'owner: !!python/object/new:os.system ["touch {marker}"]\n',
    ],
)
def test_python_tags_are_rejected_and_never_executed(tmp_path, template):
    marker = tmp_path / "pwned"
    payload = template.format(marker=marker)
    path = write(tmp_path / "models", "churn_risk.yaml", payload)

    problems = rejected(path)
    assert len(problems) == 1
    assert problems[0].reason.startswith("invalid YAML")
    assert "python/object" in problems[0].reason
    assert load_model_configs(path.parent).models == {}
    assert not marker.exists()


def test_python_tag_payload_is_live_under_an_unsafe_loader(tmp_path):
    """Control for the test above: the payload does execute when loaded unsafely."""
    marker = tmp_path / "control"
    yaml.unsafe_load(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    assert marker.exists()


def test_non_utf8_file_is_rejected(tmp_path, retrain_cfg_model_yaml):
    data = retrain_cfg_model_yaml.replace("Probability", "Probabilit\u00e9").encode("latin-1")
    path = write(tmp_path, "churn_risk.yaml", data)
    (p,) = rejected(path)
    assert "not UTF-8" in p.reason
    assert "UTF-8" in p.fix
    assert p.field == ""


def test_oversize_file_is_rejected_without_parsing(tmp_path, retrain_cfg_model_yaml):
    padding = MAX_CONFIG_BYTES + 1 - len(retrain_cfg_model_yaml.encode())
    path = write(tmp_path, "churn_risk.yaml", retrain_cfg_model_yaml + "#" * (padding - 1) + "\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES + 1
    (p,) = rejected(path)
    assert f"{MAX_CONFIG_BYTES + 1} bytes" in p.reason and str(MAX_CONFIG_BYTES) in p.reason
    assert p.fix


def test_file_of_exactly_the_size_limit_is_read(tmp_path, retrain_cfg_model_yaml, monkeypatch):
    path = write(tmp_path, "churn_risk.yaml", retrain_cfg_model_yaml)
    monkeypatch.setattr(config_mod, "MAX_CONFIG_BYTES", path.stat().st_size)
    assert check_model_file(path)[1] == []
    monkeypatch.setattr(config_mod, "MAX_CONFIG_BYTES", path.stat().st_size - 1)
    assert "bytes" in rejected(path)[0].reason


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")])
def test_top_level_must_be_a_mapping(tmp_path, text, kind):
    (p,) = rejected(write(tmp_path, "churn_risk.yaml", text))
    assert p.reason == f"top level must be a mapping, got {kind}"
    assert p.line == 1


def test_yaml_syntax_error_has_a_line(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "numeric: [tenure, monthly_spend, support_calls]", "numeric: [tenure, monthly")
    (p,) = rejected(write(tmp_path, "churn_risk.yaml", text))
    assert p.reason.startswith("invalid YAML")
    assert p.line is not None and p.line > line_of(text, "numeric:") - 1
    assert p.fix == "fix the YAML syntax"


def test_several_yaml_documents_are_rejected(tmp_path, retrain_cfg_model_yaml):
    (p,) = rejected(write(tmp_path, "churn_risk.yaml", retrain_cfg_model_yaml + "---\nname: other\n"))
    assert p.reason.startswith("invalid YAML")


def test_deep_nesting_is_rejected_not_raised(tmp_path, retrain_cfg_model_yaml):
    text = retrain_cfg_model_yaml + "extra: " + "[" * 5000 + "]" * 5000 + "\n"
    (p,) = rejected(write(tmp_path, "churn_risk.yaml", text))
    assert "too deep" in p.reason


@pytest.mark.timeout(15)
def test_alias_bomb_is_rejected_quickly(tmp_path, retrain_cfg_model_yaml):
    # ~1 KB that expands to 10**7 values (about 20 s if walked value by value; 10 more
    # lines would make it hours): it must be rejected before anything expands it.
    bomb = "  params:\n    l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
    for level in range(1, 7):
        bomb += f"    l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]\n"
    text = edit(retrain_cfg_model_yaml, "  params: {C: 1.0, max_iter: 200}\n", bomb)
    path = write(tmp_path, "churn_risk.yaml", text)
    start = time.perf_counter()
    (p,) = rejected(path)
    assert time.perf_counter() - start < 2
    assert "aliases are expanded" in p.reason
    assert "alias" in p.fix


@pytest.mark.parametrize("cycle", ["  params: &p {C: 1.0, me: *p}\n", "  params: {C: 1.0, loop: &l [1, *l]}\n"])
def test_recursive_alias_is_rejected_not_raised(tmp_path, retrain_cfg_model_yaml, cycle):
    text = edit(retrain_cfg_model_yaml, "  params: {C: 1.0, max_iter: 200}\n", cycle)
    path = write(tmp_path, "churn_risk.yaml", text)
    (p,) = rejected(path)
    assert "alias" in p.reason
    result = load_model_configs(tmp_path)  # must not raise either
    assert result.models == {} and len(result.problems) == 1


def test_ordinary_aliases_still_work(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "numeric: [tenure,", "numeric: &numeric [tenure,")
    text = edit(text, "  drift_share: 0.3\n", "  drift_share: 0.3\n  exclude: *numeric\n")
    cfg, problems = check_model_file(write(tmp_path, "churn_risk.yaml", text))
    assert problems == []
    assert cfg.drift.exclude == cfg.features.numeric


def test_yaml_1_1_booleans_do_not_break_the_alerts_on_key(tmp_path, retrain_cfg_model_yaml):
    # 'on' is a boolean in YAML 1.1; the field alerts.on must be writable without quotes
    text = retrain_cfg_model_yaml + "alerts:\n  slack_conn_id: slack_ml\n  on: [drift, failure]\n"
    cfg, problems = check_model_file(write(tmp_path, "churn_risk.yaml", text))
    assert problems == []
    assert cfg.alerts.on == ["drift", "failure"]


def test_alerts_on_errors_point_at_the_on_key(tmp_path, retrain_cfg_model_yaml):
    text = retrain_cfg_model_yaml + "alerts:\n  on: [drift, gate_failur]\n"
    problems = by_field(rejected(write(tmp_path, "churn_risk.yaml", text)))
    assert set(problems) == {"alerts.on[1]"}
    assert "did you mean 'gate_failure'?" in problems["alerts.on[1]"].reason
    assert problems["alerts.on[1]"].line == line_of(text, "  on: [")


@pytest.mark.parametrize(("word", "expected"), [("yes", True), ("no", False), ("true", True), ("false", False)])
def test_boolean_fields_accept_yes_no(tmp_path, retrain_cfg_model_yaml, word, expected):
    text = edit(retrain_cfg_model_yaml, "  drift_share: 0.3\n", f"  drift_share: 0.3\n  enabled: {word}\n")
    cfg, problems = check_model_file(write(tmp_path, "churn_risk.yaml", text))
    assert problems == []
    assert cfg.drift.enabled is expected


def test_one_bad_file_does_not_hide_the_good_ones(tmp_path, retrain_cfg_shipped_models_dir, retrain_cfg_model_yaml):
    models = tmp_path / "models"
    shutil.copytree(retrain_cfg_shipped_models_dir, models)
    write(models, "churn_risk.yaml", edit(retrain_cfg_model_yaml, "task: classification", "task: clasification"))
    write(models, "broken.yaml", "name: [unclosed\n")
    write(models, "listy.yml", "- 1\n")
    write(models, "latin.yaml", b"name: caf\xe9\n")
    write(models, "README.md", "not a config")  # ignored: not .yaml/.yml
    (models / "notes.yaml.bak").write_text("- ignored\n")

    result = load_model_configs(models)
    assert sorted(result.models) == sorted(SHIPPED)
    assert {Path(p.file).name for p in result.problems} == {"churn_risk.yaml", "broken.yaml", "listy.yml", "latin.yaml"}
    assert not result.ok


def test_missing_path_is_a_problem_not_an_exception(tmp_path, retrain_cfg_shipped_models_dir):
    missing = tmp_path / "nowhere.yaml"
    result = load_model_configs([retrain_cfg_shipped_models_dir, missing])
    assert sorted(result.models) == sorted(SHIPPED)
    (p,) = result.problems
    assert p.file == str(missing) and "no such file" in p.reason


def test_load_platform_config_reports_problems(tmp_path):
    path = write(tmp_path, "platform.yaml", "state_dir: .retrain\nallowed_estimator_prefix: [sklearn.]\n")
    with pytest.raises(ConfigError) as info:
        load_platform_config(path)
    (p,) = info.value.problems
    assert p.field == "allowed_estimator_prefix"
    assert p.line == 2
    assert "did you mean 'allowed_estimator_prefixes'?" in p.reason


# -----------------------------------------------------------------------------------------
# config_hash
# -----------------------------------------------------------------------------------------


def _reordered(value):
    if isinstance(value, dict):
        return {k: _reordered(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def _hash_of(directory: Path, text: str) -> str:
    cfg, problems = check_model_file(write(directory, "churn_risk.yaml", text))
    assert problems == []
    return cfg.config_hash()


def test_config_hash_ignores_key_order_and_comments(tmp_path, retrain_cfg_model_yaml):
    original = _hash_of(tmp_path / "a", retrain_cfg_model_yaml)
    reordered = yaml.safe_dump(_reordered(yaml.safe_load(retrain_cfg_model_yaml)), sort_keys=False)
    assert reordered.splitlines()[0] != retrain_cfg_model_yaml.splitlines()[1]  # the order did change
    commented = "# a new header comment\n" + reordered.replace("\n", "   # note\n", 3)
    assert _hash_of(tmp_path / "b", commented) == original
    assert len(original) == 16 and int(original, 16) >= 0


def test_config_hash_ignores_explicit_defaults(tmp_path, retrain_cfg_model_yaml):
    explicit = edit(retrain_cfg_model_yaml, "  drift_share: 0.3\n", "  drift_share: 0.3\n  bins: 10\n  enabled: true\n")
    assert _hash_of(tmp_path / "a", explicit) == _hash_of(tmp_path / "b", retrain_cfg_model_yaml)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  threshold: 0.2\n", "  threshold: 0.25\n"),
        ("max_iter: 200", "max_iter: 201"),
        ("numeric: [tenure, monthly_spend, support_calls]", "numeric: [monthly_spend, tenure, support_calls]"),
        ("tags: {team: growth}", "tags: {team: growth, tier: gold}"),
    ],
)
def test_config_hash_changes_with_a_value(tmp_path, retrain_cfg_model_yaml, old, new):
    before = _hash_of(tmp_path / "a", retrain_cfg_model_yaml)
    after = _hash_of(tmp_path / "b", edit(retrain_cfg_model_yaml, old, new))
    assert before != after


# -----------------------------------------------------------------------------------------
# JSON Schema
# -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_schema_validator():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_json_schema_header_and_strict_top_level():
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "owner", "task", "data", "features", "training"}
    assert {"drift", "performance", "gates", "deploy", "alerts"} <= set(schema["properties"])
    # every nested section forbids unknown keys too
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object" and "properties" in definition:
            assert definition.get("additionalProperties") is False, name


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_validate_against_the_json_schema(model_schema_validator, retrain_cfg_shipped_models_dir, name):
    document = yaml.safe_load((retrain_cfg_shipped_models_dir / f"{name}.yaml").read_text())
    errors = [e.message for e in model_schema_validator.iter_errors(document)]
    assert errors == []


def test_sample_config_validates_against_the_json_schema(model_schema_validator, retrain_cfg_model_yaml):
    assert [e.message for e in model_schema_validator.iter_errors(yaml.safe_load(retrain_cfg_model_yaml))] == []


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("  threshold: 0.2\n", "  treshold: 0.2\n"),
        ("task: classification", "task: clasification"),
        ("min_labels: 200", "min_labels: lots"),
        ("owner: ml-team@example.com\n", ""),
        ("name: churn_risk", "name: Churn-Risk"),
    ],
)
def test_json_schema_rejects_what_the_loader_rejects(model_schema_validator, retrain_cfg_model_yaml, old, new):
    document = yaml.safe_load(edit(retrain_cfg_model_yaml, old, new))
    assert list(model_schema_validator.iter_errors(document))


def test_platform_json_schema_validates_the_shipped_platform_yaml(retrain_cfg_project_root):
    schema = platform_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    document = yaml.safe_load((retrain_cfg_project_root / "configs" / "platform.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert schema["additionalProperties"] is False


def test_module_has_no_os_dependency_on_cwd(tmp_path, retrain_cfg_model_yaml, monkeypatch):
    """Relative and absolute paths give the same result whatever the working directory."""
    write(tmp_path / "models", "churn_risk.yaml", retrain_cfg_model_yaml)
    monkeypatch.chdir(tmp_path)
    relative = load_model_configs("models")
    absolute = load_model_configs(os.fspath(tmp_path / "models"))
    assert list(relative.models) == list(absolute.models) == ["churn_risk"]


def test_categorical_only_drift_method_on_a_numeric_feature_is_rejected(tmp_path, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "tenure: {method: ks, threshold: 0.01}", "tenure: {method: linf}")
    problems = {p.field: p for p in rejected(write(tmp_path, "churn_risk.yaml", text))}
    problem = problems["drift.features.tenure.method"]
    assert "'linf' needs a categorical feature" in problem.reason
    assert problem.line == next(i for i, line in enumerate(text.splitlines(), 1) if "tenure: {method: linf}" in line)
