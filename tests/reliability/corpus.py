"""Malformed and malicious model configs, made from the shipped ``credit_default.yaml``.

Each case is ``(file name, content bytes, field)``: ``field`` is the field the rejection must
name (``<file>`` for a file that is not a usable YAML mapping at all). Every case is written
as ``<name>.yaml`` whose model name (when it has one) is ``<name>``, so that the only problem
of a case is the one it was made for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MARKER = "/tmp/retrain-corpus-pwned"  # a config that ran code would create this file


def _base() -> dict:
    return yaml.safe_load((REPO / "configs" / "models" / "credit_default.yaml").read_text())


def _mutated(name: str, change: Callable[[dict], None]) -> bytes:
    raw = _base()
    raw["name"] = name
    change(raw)
    return yaml.safe_dump(raw, sort_keys=False).encode()


def _set(path: str, value) -> Callable[[dict], None]:
    def change(raw: dict) -> None:
        *parents, leaf = path.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    return change


MUTATIONS: list[tuple[str, str, Callable[[dict], None]]] = [
    # code execution through the estimator import path
    ("estimator_os_system", "training.estimator", _set("training.estimator", "os.system")),
    ("estimator_subprocess", "training.estimator", _set("training.estimator", "subprocess.Popen")),
    ("estimator_eval", "training.estimator", _set("training.estimator", "builtins.eval")),
    ("estimator_lookalike", "training.estimator", _set("training.estimator", "sklearnx.evil.Model")),
    ("estimator_dunder", "training.estimator", _set("training.estimator", "sklearn.__class__.__init__")),
    ("estimator_not_a_path", "training.estimator", _set("training.estimator", "__import__('os').system('id')")),
    # reading outside the data roots
    ("data_path_traversal", "data.path", _set("data.path", "../../../etc")),
    ("data_path_absolute", "data.path", _set("data.path", "/etc")),
    ("labels_path_traversal", "data.labels_path", _set("data.labels_path", "../../secrets")),
    # contradictions and impossible values
    ("canary_decreasing", "deploy.canary_steps", _set("deploy", {"mode": "canary", "canary_steps": [50, 20, 100]})),
    ("canary_repeated", "deploy.canary_steps", _set("deploy", {"mode": "canary", "canary_steps": [20, 20, 100]})),
    ("canary_over_100", "deploy.canary_steps", _set("deploy", {"mode": "canary", "canary_steps": [50, 150]})),
    ("deploy_mode_unknown", "deploy.mode", _set("deploy", {"mode": "yolo"})),
    ("rollout_alpha", "deploy.alpha", _set("deploy", {"mode": "canary", "alpha": 0.9})),
    ("unknown_metric", "performance.metric", _set("performance.metric", "accuracy_of_doom")),
    ("levels_contradict", "performance", lambda r: r["performance"].update(warn_drop=0.3, critical_drop=0.1)),
    ("gate_unknown_metric", "gates", lambda r: r["gates"].append({"name": "x", "metric": "roc_aucc", "min": 0.5})),
    ("gate_unknown_type", "gates", lambda r: r["gates"].append({"name": "x", "type": "vibes", "metric": "roc_auc"})),
    ("task_unknown", "task", _set("task", "clustering")),
    ("name_bad_chars", "name", _set("name", "Bad Name!")),
    ("unknown_top_field", "exec", _set("exec", "rm -rf /")),
    ("drift_threshold_negative", "drift.threshold", _set("drift.threshold", -1)),
    ("drift_share_over_1", "drift.drift_share", _set("drift.drift_share", 3)),
    ("label_delay_negative", "data.label_delay_days", _set("data.label_delay_days", -2)),
    ("target_is_a_feature", "features", lambda r: r["features"]["numeric"].append(r["features"]["target"])),
    ("no_features", "features", lambda r: r["features"].update(numeric=[], categorical=[])),
    ("rollback_drop_over_1", "rollback.max_drop", _set("rollback", {"max_drop": 5})),
    ("guard_interval_past_its_end", "guard", _set("guard", {"minutes": 1, "interval_s": 120})),
    ("guard_alpha_over_half", "guard.alpha", _set("guard", {"alpha": 0.9})),
    ("cron_garbage", "schedule.monitor", _set("schedule.monitor", "every tuesday-ish")),
    ("window_zero", "windows.monitor_days", _set("windows.monitor_days", 0)),
    ("params_not_a_mapping", "training.params", _set("training.params", "max_iter=1")),
    ("owner_missing", "owner", lambda r: r.pop("owner")),
    ("between_min_over_max", "validation.between.age", _set("validation.between.age", {"min": 120, "max": 18})),
    ("alert_kind_unknown", "alerts.on", _set("alerts.on", ["everything"])),
    ("name_not_file_name", "name", _set("name", "credit_default")),  # also a duplicate of a valid model's name
]

RAW: list[tuple[str, str, bytes]] = [
    (
        "yaml_bomb",
        "<file>",
        b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        b"g: [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
    ),
    ("python_object_apply", "<file>", f"name: !!python/object/apply:os.system ['touch {MARKER}']\n".encode()),
    ("python_name", "<file>", b"name: !!python/name:os.system\n"),
    ("python_module", "<file>", b"owner: !!python/module:os\n"),
    ("not_a_mapping", "<file>", b"- just\n- a list\n"),
    ("empty", "name", b""),
    ("syntax_error", "<file>", b"name: [unclosed\n"),
    ("tab_indent", "<file>", b"name:\tfoo\n\tbar: 1\n"),
    ("huge", "<file>", b"# " + b"x" * 2_000_000 + b"\n"),
    ("utf16_binary", "<file>", b"\xff\xfe\x00n\x00a\x00m\x00e\x00:\x00 \x00\xc3\x28"),
    ("latin1", "<file>", "name: latin1\nowner: caf\xe9\n".encode("latin-1")),
]


def cases() -> list[tuple[str, str, bytes]]:
    """``(name, field, content)`` of every case."""
    out = [(name, field, _mutated(name, change)) for name, field, change in MUTATIONS]
    return out + RAW


def write(directory: Path) -> list[tuple[Path, str]]:
    """Write every case into ``directory``; ``(path, field)`` of each."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, field, content in cases():
        path = directory / f"{name}.yaml"
        path.write_bytes(content)
        written.append((path, field))
    return written
