"""``make demo``: simulated days run through the real DAGs with ``dag.test()``.

The simulated calendar ends today (UTC; ``--last-day`` to choose): after the demo, the
scheduler of ``make up`` continues where it stopped, and a model's monitor unpaused there
runs for today on the demo's data. For each day the monitor DAG of every model runs for that
day's logical date (at ``RUN_TIME``, off every schedule of the example configs, so the
scheduler's own run of a day is never mistaken for one that exists). When its branch
requests a retrain, the retrain DAG run it triggered (with its ``conf``) is executed too, the
way the scheduler would. Runs carry their real start and end times and task logs the UI
shows (:mod:`retrain_demo.runs`). The story printed comes from the decision ledger the
tasks wrote, so what you read is what an auditor reads. Then the live part
(:mod:`retrain_demo.live`): a serving gateway with traffic, a canary rollout that is
promoted and a bad champion rolled back automatically.

Run with ``python -m retrain_demo.demo`` (the package is installed with the project by ``make
setup``); ``make demo`` does that with the environment set.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# Time of day of the demo's runs: not a time any example schedule fires at (monitor 06:00 and
# 00:00, retrain floors Sunday 03:00 and 00:00), so unpausing a DAG after the demo creates the
# scheduled run of today instead of finding the demo's run at that logical date and skipping it.
RUN_TIME = dt.time(5, 30)


# The simulated weather of daily_demand follows the winter of the demo's first calendar
# (January on), whatever the day the demo runs: an autumn's cooling would be a drift of its own.
SEASON_START = dt.date(2026, 1, 1)


def today_utc() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def airflow_env(state_dir: Path, repo: Path = REPO_ROOT) -> dict[str, str]:
    """Environment of the embedded Airflow: all state under ``state_dir``."""
    home = state_dir / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "RETRAIN_HOME": str(state_dir),
        "RETRAIN_CONFIG_DIR": str(repo / "configs"),
    }


SCENARIOS = {
    # model: (drift kind, seed)
    "credit_default": ("covariate", 11),
    "daily_demand": ("concept", 12),
}


def _reset(state_dir: Path) -> None:
    for sub in ("data", "mlflow", "reports", "data-registry", "dvc-remote", "quarantine"):
        shutil.rmtree(state_dir / sub, ignore_errors=True)
    # The ledger and the prediction log describe the MLflow store just removed: start them anew.
    for name in (
        "decisions.jsonl",
        "platform.db",
        "platform.db-wal",
        "platform.db-shm",
        "predictions.db",
        "predictions.db-wal",
        "predictions.db-shm",
        "data-registry.lock",
    ):
        (state_dir / name).unlink(missing_ok=True)
    # Old runs would collide with the runs the demo triggers for the same simulated days.
    (state_dir / "airflow" / "airflow.db").unlink(missing_ok=True)


def migrate_db(env: dict[str, str]) -> None:
    airflow = Path(sys.executable).parent / "airflow"
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(airflow), "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def quiet_airflow() -> None:
    for name in (
        "airflow",
        "airflow.task",
        "airflow.processor",
        "sqlalchemy",
        "mlflow",
        "alembic",
        "py.warnings",
        "retrain_airflow",
        "retrain_demo",
        "retrain_lib",
        "distributed",
        "urllib3",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)


def _new_records(ledger, seen: int) -> list[dict]:
    """Records of ``ledger`` (an ``audit.Ledger``) from ``seq`` ``seen`` on."""
    return [r for r in ledger.records() if r["seq"] >= seen]


def _top(details: dict) -> str:
    tops = [t for t in details.get("top") or [] if t.get("drifted")]
    return ", ".join(
        f"{t['name']} {t['method']} {t['p_value']:.1e}"
        if t.get("p_value") is not None
        else f"{t['name']} {t['method']} {t['score']:.2f}"
        for t in tops[:3]
    )


class _Story:
    """Prints the story to the terminal while Airflow's own logging goes to a file."""

    def __init__(self, log_path: Path):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self.out = os.fdopen(os.dup(1), "w", buffering=1)
        self.log = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the demo
        self.saved = (os.dup(1), os.dup(2))
        os.dup2(self.log.fileno(), 1)
        os.dup2(self.log.fileno(), 2)

    def __call__(self, text: str = "", err: bool = False) -> None:
        print(text, file=self.out, flush=True)

    def close(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        self.log.close()


def run(args) -> int:
    state_dir = Path(args.state_dir).resolve()
    story = _Story(state_dir / "demo.log")
    try:
        return _run(args, state_dir, story)
    finally:
        story.close()


def _run(args, state_dir: Path, print) -> int:  # noqa: A002 - print goes to the terminal
    log_note = state_dir / "demo.log"
    env = airflow_env(state_dir)
    os.environ.update(env)
    # Task logs (runs.task_logs) as JSON lines, the form a supervised task's log has.
    os.environ["AIRFLOW__LOGGING__JSON_LOGS"] = "True"
    last_day = dt.date.fromisoformat(args.last_day) if args.last_day else today_utc()
    start = last_day - dt.timedelta(days=args.days - 1)
    if args.reset:
        _reset(state_dir)
    print(
        f"state under {state_dir}; task logs in {Path(env['AIRFLOW_HOME']) / 'logs'} (and the Airflow UI), "
        f"Airflow's other logs in {log_note}"
    )
    print(
        f"simulated calendar: {start} to {last_day} (today, UTC)"
        if last_day == today_utc()
        else f"simulated calendar: {start} to {last_day}"
    )
    t0 = time.monotonic()
    migrate_db(env)
    print(f"airflow metadata DB ready ({time.monotonic() - t0:.0f} s)")

    from retrain_lib.core.settings import load_settings

    settings = load_settings(env["RETRAIN_CONFIG_DIR"])
    models = args.models.split(",")
    configs, drift_starts = _simulate_models(args, settings, models, start, print)

    from airflow.dag_processing.dagbag import DagBag

    from retrain_demo.runs import task_logs

    quiet_airflow()
    bag = DagBag(dag_folder=env["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        print(f"DAG import errors: {bag.import_errors}", err=True)
        return 1
    print(f"DAGs: {', '.join(sorted(bag.dag_ids))}\n")
    from retrain_lib.store.audit import Ledger

    ledger = Ledger.from_settings(settings)
    seen = len(_new_records(ledger, 0))
    header = f"{'day':<11} {'model':<15} {'decision':<9} {'drifted':>7}  {'why (top drifted features or trigger)':<58} outcome"
    print(header)
    print("-" * len(header))
    with task_logs():
        seen = _days(args, bag, ledger, models, start, seen, print)
        if seen is None:
            return 1
        loop_end = seen  # the live part's records come after
        if args.live and args.live_model in models:
            from retrain_demo.live import run_live

            if run_live(bag, settings, ledger, args.live_model, last_day, state_dir, print) != 0:
                return 1
            seen = len(_new_records(ledger, 0))
    from retrain_demo.runs import drop_unstarted_guard_runs

    dropped = drop_unstarted_guard_runs()
    if dropped:
        print(
            f"\n{len(dropped)} post-deploy guard runs that the demo's promotions started were not run: a guard "
            "watches a new champion's live traffic for guard.minutes, which simulated days do not have "
            "(README, 'Post-deploy guard')"
        )
    print()
    summary = _print_summary(settings, ledger, models, loop_end, seen, (configs, drift_starts), print)
    print(f"\ntook {time.monotonic() - t0:.0f} s. Watch the same state in the UIs:")
    _print_ui_hints(env, settings, last_day, print)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def _simulate_models(args, settings, models: list[str], start: dt.date, print) -> tuple[dict, dict]:  # noqa: A002
    """Write each model's simulated stream; its config and drift start day per model."""
    from retrain_lib.core.config import load_model_config
    from retrain_lib.tools.simulate import simulate

    configs, drift_starts = {}, {}
    for model in models:
        cfg = configs[model] = load_model_config(settings.models_dir / f"{model}.yaml", settings.platform)
        kind, seed = SCENARIOS.get(model, ("covariate", 0))
        kind = args.drift_kind or kind
        res = simulate(
            cfg,
            settings.data_root,
            days=args.days,
            start=start,
            drift_day=args.drift_day,
            drift_kind=kind,
            seed=seed,
            rows_per_day=args.rows_per_day,
            season_start=SEASON_START,
        )
        drift_starts[model] = res.drift_start
        print(
            f"simulated {model}: {res.days} days, {res.rows} rows, {kind} drift from {res.drift_start}, "
            f"labels {cfg.data.label_delay_days} day(s) late"
        )
    return configs, drift_starts


def _worse(value: float, than: float, greater_is_better: bool) -> bool:
    return value < than if greater_is_better else value > than


def _print_summary(settings, ledger, models, loop_end, seen, simulated, print) -> dict:  # noqa: A002
    """Each model's aliases, how it recovered from its drift, the ledger and the audit commands."""
    from retrain_lib.store import registry

    configs, drift_starts = simulated

    client = registry.get_client(settings.tracking_uri)
    summary = {}
    for model in models:
        a = registry.aliases(client, model)
        summary[model] = a
        previous = a.get("previous-champion")
        print(
            f"{model}: champion v{a.get('champion')}, "
            + (f"previous-champion v{previous}" if previous else "no previous-champion")
        )
    _print_recovery(ledger, configs, drift_starts, loop_end, print)
    problems = ledger.verify()
    print(f"decision ledger: {ledger} ({seen} records, chain {'intact' if not problems else 'BROKEN'})")
    champion = summary.get(models[0], {}).get("champion")
    print("\nAudit and reproduce (from the ledger, MLflow and the DVC data registry):")
    print(f"  .venv/bin/retrain history {models[0]} --format json")
    print("  .venv/bin/retrain ledger verify")
    if champion:
        print(f"  .venv/bin/retrain reproduce {models[0]} {champion} --format json")
    return summary


def _print_ui_hints(env, settings, last_day: dt.date, print) -> None:  # noqa: A002
    """Where to watch the same state: the Airflow and MLflow UIs."""
    print(
        f"  Airflow: make up             -> http://localhost:8080 (user admin; password in "
        f"{Path(env['AIRFLOW_HOME']) / 'simple_auth_manager_passwords.json.generated'})"
    )
    print(
        "           its DAGs start paused: unpause a model's DAGs and its monitor runs for today "
        f'({last_day}) on this data; README, "Using the real Airflow"'
    )
    print(
        f"  MLflow:  make mlflow-ui      -> http://localhost:5000  (mlflow ui --backend-store-uri "
        f"{settings.tracking_uri})"
    )


def _days(args, bag, ledger, models, start: dt.date, seen: int, print) -> int | None:  # noqa: A002
    """The simulated days from ``--first-day`` on, one table row per model and day: its monitor
    run, and the retrain run it requested. Returns the number of ledger records read
    (``seen`` on), or ``None`` when a run failed."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from retrain_demo.runs import run_dag

    for n in range(args.first_day, args.days + 1):
        day = start + dt.timedelta(days=n - 1)
        for model in models:
            monitor = bag.get_dag(f"{model}__monitor")
            logical = dt.datetime.combine(day, RUN_TIME, tzinfo=dt.UTC)
            run_m = run_dag(monitor, logical_date=logical)
            if run_m.state != "success":
                print(f"{day} {model}: monitor run {run_m.run_id} ended {run_m.state}", err=True)
                return None
            outcome = ""
            with create_session() as session:
                triggered = (
                    session.query(DagRun)
                    .filter(DagRun.dag_id == f"{model}__retrain", DagRun.run_id == f"requested__{run_m.run_id}")
                    .one_or_none()
                )
                trig = (triggered.logical_date, dict(triggered.conf or {})) if triggered else None
            if trig:
                retrain = bag.get_dag(f"{model}__retrain")
                run_r = run_dag(retrain, logical_date=trig[0], conf=trig[1])
                if run_r.state != "success":
                    print(f"{day} {model}: retrain run ended {run_r.state}", err=True)
                    return None
            records = _new_records(ledger, seen)
            seen += len(records)
            mon = next((r for r in records if r["event"] == "monitor"), None)
            follow_up = any(r["event"] == "gates" and r["details"].get("follow_up") for r in records)
            for r in records:
                if r["event"] == "promote":
                    champ = next(m for m in r["details"]["moves"] if m["alias"] == "champion")
                    m = r["details"]["metrics"]
                    key = "roc_auc" if "roc_auc" in m else "rmse"
                    old = (r["details"].get("champion_metrics") or {}).get(key)
                    vs = f" vs champion {old:.3f}" if old is not None else ""
                    # a follow-up learnt the champion's own regime from more days: promoted without a
                    # gain test, its score is of the recipe before the refit on the newest days
                    how = "follow-up promoted" if follow_up else "promoted"
                    outcome = f"retrained -> v{champ['to']} {how} ({key} {m[key]:.3f}{vs})"
                elif r["event"] == "reject":
                    outcome = "retrained -> rejected: " + "; ".join(r["details"]["failed"])
                elif r["event"] == "no_gain":
                    outcome = "retrained -> " + r["details"]["reason"]
            decision = mon["details"]["action"] if mon else "?"
            share = mon["details"].get("drifted_share") if mon else None
            if not outcome:
                reasons = mon["details"]["reasons"] if mon else []
                outcome = (
                    "throttled"
                    if any("throttled" in x for x in reasons)
                    else (f"champion v{mon['details']['champion_version']}" if mon else "")
                )
                perf = [x for x in reasons if x.startswith("performance")]
                if perf:
                    outcome += f" ({perf[0]})"
            drift_fired = bool(mon) and any(
                sig.get("signal") == "drift" and sig.get("triggered") for sig in mon["details"].get("signals") or []
            )
            top = _top(mon["details"]) if decision == "retrain" and drift_fired else ""
            if mon and decision != "retrain" and any("drift reference rebased" in x for x in mon["details"]["reasons"]):
                top = f"drift recorded, reference rebased: {_top(mon['details'])}"[:58]
            if mon and decision == "retrain" and not top:
                top = "; ".join(x.split(" (drop")[0] for x in mon["details"]["reasons"])[:58]
            share_s = f"{share:.0%}" if share is not None else "-"
            print(f"{day!s:<11} {model:<15} {decision:<9} {share_s:>7}  {top:<58} {outcome}")
    return seen


def _print_recovery(ledger, configs: dict, drift_starts: dict, loop_end: int, print) -> None:  # noqa: A002
    """Per model: its primary metric before the drift, at its worst and after the retrain, as
    the daily monitor runs measured it (the ledger's monitor records; the live part's runs
    are left out), so a reader sees whether the retrains brought the model back."""
    from retrain_lib.core.metrics import greater_is_better
    from retrain_lib.store.ledger_history import metric_recovery

    def point(p) -> str:
        return f"{p.value:.4f} ({p.as_of} v{p.champion_version})" if p else "-"

    rows = []
    for model, cfg in configs.items():
        if cfg.performance is None or drift_starts.get(model) is None:
            continue
        metric = cfg.performance.metric
        records = [r for r in ledger.records(model) if r["seq"] < loop_end]
        r = metric_recovery(
            records, metric=metric, greater_is_better=greater_is_better(metric), drift_start=drift_starts[model]
        )
        share = r.recovered_share
        late = f"labels {cfg.data.label_delay_days} day(s) late"
        promoted = f"v{', v'.join(r.retrained)} promoted" if r.retrained else "no retrain promoted since the drift"
        if r.worst is None:
            verdict = f"no labels of the days since the drift matured yet ({late}); {promoted}"
        elif (
            not r.retrained and r.before is not None and not _worse(r.worst.value, r.before.value, r.greater_is_better)
        ):
            verdict = "no loss since the drift, so no retrain promoted (the labels decide)"
        elif not r.retrained:
            verdict = promoted
        elif r.after is None:
            verdict = f"{promoted}; not measured yet ({late})"
        elif share is None:
            verdict = "-"
        else:
            verdict = f"{share + 0.0:.0%} of the loss regained"
            if r.retrained[-1] != r.after.champion_version:  # promoted on a day whose labels are not in yet
                verdict += f" by v{r.after.champion_version}; v{r.retrained[-1]} promoted since, not measured yet"
        rows.append((model, metric, point(r.before), point(r.worst), point(r.after), verdict, drift_starts[model]))
    if not rows:
        return
    print(
        "\nRecovery: each champion's live metric on the matured labels of its monitor window, as the daily "
        "monitor runs recorded it in the ledger"
    )
    head = (
        f"{'model':<15} {'metric':<8} {'before the drift':<27} {'worst since the drift':<27} "
        f"{'after the retrain':<27} recovered"
    )
    print(head)
    print("-" * len(head))
    for model, metric, before, worst, after, verdict, drift in rows:
        print(f"{model:<15} {metric:<8} {before:<27} {worst:<27} {after:<27} {verdict} (drift from {drift})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="retrain-demo", description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", default=os.environ.get("RETRAIN_HOME", str(REPO_ROOT / ".retrain")))
    p.add_argument("--models", default="credit_default,daily_demand")
    p.add_argument("--days", type=int, default=50, help="simulated days, the last one --last-day")
    p.add_argument("--last-day", help="last simulated day, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--drift-day", type=int, default=40)
    p.add_argument(
        "--drift-kind",
        choices=("covariate", "concept", "none"),
        help="the drift of every model (default: covariate for credit_default, concept for daily_demand)",
    )
    p.add_argument("--first-day", type=int, default=29)
    p.add_argument("--rows-per-day", type=int, default=1500)
    p.add_argument("--no-reset", dest="reset", action="store_false")
    p.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="skip the live part (gateway, canary rollout, automatic rollback)",
    )
    p.add_argument("--live-model", default="credit_default", help="model of the live part")
    p.add_argument("--json", help="write the final aliases to this file")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
