"""The ``retrain config ...`` commands, in process and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrain_lib.cli.app import main
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_OK

pytestmark = pytest.mark.usefixtures("retrain_cfg_isolated_env")

SHIPPED = ["credit_default", "daily_demand"]


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the sample"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line of ``text`` that contains ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on {len(hits)} lines"
    return hits[0]


@pytest.fixture
def bad_config(retrain_cfg_config_dir, retrain_cfg_model_yaml):
    """Adds a model file with a misspelt key and a wrong type to the config copy.
    Returns (path, text)."""
    text = edit(retrain_cfg_model_yaml, "  threshold: 0.2\n", "  treshold: 0.2\n")
    text = edit(text, "min_labels: 200", "min_labels: lots")
    path = retrain_cfg_config_dir / "models" / "churn_risk.yaml"
    path.write_text(text)
    return path, text


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_exit(capsys, *argv: str) -> tuple[int, str, str]:
    """For arguments that make argparse exit."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIN_", "MLFLOW_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# -----------------------------------------------------------------------------------------
# config validate, in process
# -----------------------------------------------------------------------------------------


def test_validate_shipped_configs_exits_0(capsys, retrain_cfg_config_dir):
    code, out, err = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate")
    assert code == EXIT_OK == 0
    assert out.startswith("ok: 2 model config(s) valid:")
    assert all(name in out for name in SHIPPED)
    assert err == ""


def test_validate_explicit_models_dir_exits_0(capsys, retrain_cfg_shipped_models_dir):
    code, out, _ = run(capsys, "config", "validate", str(retrain_cfg_shipped_models_dir))
    assert code == 0
    assert "credit_default, daily_demand" in out


def test_validate_bad_file_exits_2_with_locations_fields_and_fixes(capsys, retrain_cfg_config_dir, bad_config):
    path, text = bad_config
    code, out, err = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate")
    assert code == EXIT_BAD_INPUT == 2
    assert out == ""
    assert f"{path}:{line_of(text, 'treshold:')}:" in err
    assert f"{path}:{line_of(text, 'min_labels:')}:" in err
    assert "drift.treshold: unknown field 'treshold'; did you mean 'threshold'?" in err
    assert "performance.min_labels:" in err and "'lots'" in err
    assert err.count("    fix: ") == 2
    assert "2 problem(s) in 1 file(s); 2 valid model(s)" in err


def test_validate_json_lists_valid_models_and_problems(capsys, retrain_cfg_config_dir, bad_config):
    path, text = bad_config
    code, out, err = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate", "--format", "json")
    assert code == 2
    report = json.loads(out)
    assert report["valid"] == SHIPPED
    problems = {p["field"]: p for p in report["problems"]}
    assert set(problems) == {"drift.treshold", "performance.min_labels"}
    for p in problems.values():
        assert set(p) == {"file", "line", "column", "field", "reason", "fix"}
        assert p["file"] == str(path)
        assert p["fix"]
    assert problems["drift.treshold"]["line"] == line_of(text, "treshold:")
    assert problems["performance.min_labels"]["line"] == line_of(text, "min_labels:")


def test_validate_json_when_everything_is_valid(capsys, retrain_cfg_config_dir):
    code, out, _ = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate", "--format", "json")
    assert code == 0
    assert json.loads(out) == {"valid": SHIPPED, "problems": []}


def test_validate_explicit_file_and_missing_path(capsys, tmp_path, bad_config):
    path, _ = bad_config
    code, _, err = run(capsys, "config", "validate", str(path))
    assert code == 2 and "drift.treshold" in err

    missing = tmp_path / "nope.yaml"
    code, _, err = run(capsys, "config", "validate", str(missing))
    assert code == 2
    assert f"{missing}: <file>: no such file or directory" in err


def test_validate_uses_retrain_config_dir_env(capsys, monkeypatch, retrain_cfg_config_dir, bad_config):
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(retrain_cfg_config_dir))
    code, _, err = run(capsys, "config", "validate")
    assert code == 2 and "drift.treshold" in err

    # --config-dir wins over the environment
    clean = retrain_cfg_config_dir.parent / "clean"
    (clean / "models").mkdir(parents=True)
    (clean / "models" / "daily_demand.yaml").write_text(
        (retrain_cfg_config_dir / "models" / "daily_demand.yaml").read_text()
    )
    code, out, _ = run(capsys, "--config-dir", str(clean), "config", "validate")
    assert code == 0 and "ok: 1 model config(s) valid: daily_demand" in out


def test_validate_with_an_invalid_platform_yaml_exits_2(capsys, retrain_cfg_config_dir):
    platform = retrain_cfg_config_dir / "platform.yaml"
    platform.write_text("state_dir: .retrain\nallowed_estimator_prefix: [sklearn.]\n")
    code, out, err = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate")
    assert code == 2
    assert err.startswith("error: ")
    assert f"{platform}:2:" in err and "did you mean 'allowed_estimator_prefixes'?" in err


def test_validate_honours_the_platform_estimator_allow_list(capsys, retrain_cfg_config_dir, retrain_cfg_model_yaml):
    text = edit(retrain_cfg_model_yaml, "sklearn.linear_model.LogisticRegression", "lightgbm.LGBMClassifier")
    (retrain_cfg_config_dir / "models" / "churn_risk.yaml").write_text(text)
    code, _, err = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate")
    assert code == 2 and "training.estimator" in err

    platform = retrain_cfg_config_dir / "platform.yaml"
    platform.write_text(platform.read_text().replace('["sklearn."]', '["sklearn.", "lightgbm."]'))
    code, out, _ = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate")
    assert code == 0 and "churn_risk" in out


def test_validate_reports_every_problem_of_every_file_in_one_pass(
    capsys, retrain_cfg_config_dir, retrain_cfg_model_yaml
):
    """A misspelt estimator class, a misspelt param and a name that is not the file name come
    with the schema's own errors, all files at once, each with file, line, field and a
    "did you mean"."""
    models = retrain_cfg_config_dir / "models"
    klass = edit(
        retrain_cfg_model_yaml, "sklearn.linear_model.LogisticRegression", "sklearn.linear_model.LogisticRegresion"
    )
    klass = edit(klass, "name: churn_risk", "name: churn_risks")
    klass = edit(klass, "  threshold: 0.2\n", "  treshold: 0.2\n")  # a schema error in the same file
    (models / "churn_risk.yaml").write_text(klass)
    param = edit(retrain_cfg_model_yaml, "name: churn_risk", "name: churn_param")
    param = edit(param, "{C: 1.0, max_iter: 200}", "{C: 1.0, max_iters: 200}")
    (models / "churn_param.yaml").write_text(param)
    code, out, _ = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate", "--format", "json")
    assert code == EXIT_BAD_INPUT
    report = json.loads(out)
    assert report["valid"] == SHIPPED
    got = {(Path(p["file"]).name, p["line"], p["field"]): p["reason"] for p in report["problems"]}
    assert got[("churn_risk.yaml", line_of(klass, "name: churn_risks"), "name")] == (
        "model name 'churn_risks' does not match the file name 'churn_risk.yaml'"
    )
    assert got[("churn_risk.yaml", line_of(klass, "estimator:"), "training.estimator")].endswith(
        "module 'sklearn.linear_model' has no 'LogisticRegresion'; did you mean 'LogisticRegression'?"
    )
    assert ("churn_risk.yaml", line_of(klass, "treshold"), "drift.treshold") in got
    assert got[("churn_param.yaml", line_of(param, "max_iters"), "training.params.max_iters")] == (
        "'max_iters' is not a parameter of LogisticRegression; did you mean 'max_iter'?"
    )
    assert len(got) == 4


def test_validate_imports_no_heavy_library(retrain_cfg_config_dir):
    code = (
        "import json, sys\nfrom retrain_lib.cli.app import main\n"
        f"main(['--config-dir', {str(retrain_cfg_config_dir)!r}, 'config', 'validate'])\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sklearn', 'numpy', 'scipy', 'pandas', 'mlflow'})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def test_validate_reports_a_malicious_file_and_keeps_going(capsys, tmp_path, retrain_cfg_config_dir):
    marker = tmp_path / "pwned"
    (retrain_cfg_config_dir / "models" / "evil.yaml").write_text(
        f'!!python/object/apply:os.system ["touch {marker}"]\n'
    )
    (retrain_cfg_config_dir / "models" / "loop.yaml").write_text("name: &a [*a]\n")
    code, out, err = run(capsys, "--config-dir", str(retrain_cfg_config_dir), "config", "validate", "--format", "json")
    assert code == 2
    report = json.loads(out)
    assert report["valid"] == SHIPPED
    assert {Path(p["file"]).name for p in report["problems"]} == {"evil.yaml", "loop.yaml"}
    assert not marker.exists()


# -----------------------------------------------------------------------------------------
# config schema, help and argument errors
# -----------------------------------------------------------------------------------------


def test_schema_prints_the_model_json_schema(capsys):
    code, out, _ = run(capsys, "config", "schema")
    assert code == 0
    schema = json.loads(out)
    assert "properties" in schema and "training" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_schema_platform(capsys):
    code, out, _ = run(capsys, "config", "schema", "--platform")
    assert code == 0
    assert "allowed_estimator_prefixes" in json.loads(out)["properties"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [(["--help"], "config"), (["config", "validate", "--help"], "--format"), (["config", "--help"], "schema")],
)
def test_help_exits_0(capsys, argv, expected):
    code, out, _ = run_exit(capsys, *argv)
    assert code == 0
    assert out.startswith("usage: retrain")
    assert expected in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["config"], "required"),
        (["frobnicate"], "invalid choice"),
        (["config", "validate", "--bogus"], "unrecognized arguments: --bogus"),
        (["--bogus", "config", "validate"], "unrecognized arguments: --bogus"),
        (["config", "validate", "--format", "xml"], "invalid choice: 'xml'"),
        (["config", "schema", "extra"], "unrecognized arguments: extra"),
    ],
)
def test_bad_arguments_exit_2(capsys, argv, message):
    code, out, err = run_exit(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "usage: retrain" in err and message in err


# -----------------------------------------------------------------------------------------
# real processes: the installed console script and python -m
# -----------------------------------------------------------------------------------------


@pytest.fixture
def retrain_script() -> Path:
    script = Path(sys.executable).with_name("retrain")
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    return script


def test_console_script_validate(retrain_script, tmp_path, retrain_cfg_config_dir, bad_config):
    path, text = bad_config
    proc = subprocess.run(
        [str(retrain_script), "--config-dir", str(retrain_cfg_config_dir), "config", "validate"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:{line_of(text, 'treshold:')}:" in proc.stderr
    assert "did you mean 'threshold'?" in proc.stderr
    assert "Traceback" not in proc.stderr

    path.unlink()
    proc = subprocess.run(
        [str(retrain_script), "--config-dir", str(retrain_cfg_config_dir), "config", "validate"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ok: 2 model config(s) valid" in proc.stdout


def test_console_script_unknown_argument(retrain_script, tmp_path):
    proc = subprocess.run(
        [str(retrain_script), "config", "validate", "--nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unrecognized arguments: --nope" in proc.stderr


def test_python_dash_m_schema_and_validate(tmp_path, retrain_cfg_config_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "retrain_lib", "config", "schema"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "properties" in json.loads(proc.stdout)

    env = clean_env() | {"RETRAIN_CONFIG_DIR": str(retrain_cfg_config_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "retrain_lib", "config", "validate", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid"] == SHIPPED
