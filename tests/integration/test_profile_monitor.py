"""``drift.engine: profile`` through real Airflow (``dag.test()``) and a real MLflow store: the
first retrain stores the reference profile with the version; the next monitor run maps one
profile task per partition of its current window, reduces them in ``check_model``, and its
binned drift scores equal the exact path's on the same windows."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from airflow_runs import task_states, triggered_retrain, xcom_return
from platforms import credit_platform, fixed_policy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"


def _profile_engine(raw: dict) -> None:
    fixed_policy(raw)
    raw["drift"]["engine"] = "profile"
    raw["drift"]["features"] = {}  # PSI everywhere: every score is binned, so exact equality holds


@pytest.fixture(scope="module")
def platform(airflow_db, tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:  # runs other modules left in the shared DB
        for run in session.query(DagRun).all():
            session.delete(run)
    root = tmp_path_factory.mktemp("profiles")
    with credit_platform(root, days=34, rows_per_day=600, seed=5, edit=_profile_engine) as (settings, cfg, cfg_dir):
        os.environ["RETRAIN_STRICT"] = "1"
        try:
            bag = DagBag(dag_folder=str(REPO / "dags"))
            assert bag.import_errors == {}
            yield bag, settings, cfg
        finally:
            os.environ.pop("RETRAIN_STRICT", None)


def _monitor(bag, day: dt.date):
    run = bag.dags[f"{MODEL}__monitor"].test(logical_date=dt.datetime.combine(day, dt.time(6), tzinfo=dt.UTC))
    assert run.state == "success", task_states(f"{MODEL}__monitor", run.run_id)
    return run


def _mapped_states(dag_id: str, run_id: str, task_id: str) -> list[tuple[int, str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).all()
        return sorted((ti.map_index, str(ti.state)) for ti in tis)


def test_reference_profile_stored_and_partitions_mapped(platform):
    from retrain_lib.pipeline.profiles import REFERENCE_PROFILE_ARTIFACT
    from retrain_lib.stats.drift import drift_for_config
    from retrain_lib.stats.profile import Profile
    from retrain_lib.store import registry
    from retrain_lib.store.data import load_window

    bag, settings, cfg = platform
    # no champion: nothing to map, check_model profiles the window itself and asks for a retrain
    first = _monitor(bag, dt.date(2026, 1, 29))
    assert _mapped_states(f"{MODEL}__monitor", first.run_id, "profile_partitions") in ([], [(-1, "skipped")])
    when, conf = triggered_retrain(MODEL, first.run_id)
    assert bag.dags[f"{MODEL}__retrain"].test(logical_date=when, run_conf=conf).state == "success"

    client = registry.get_client(settings.tracking_uri)
    version = client.get_model_version(MODEL, registry.aliases(client, MODEL)["champion"])
    local = client.download_artifacts(version.run_id, REFERENCE_PROFILE_ARTIFACT, str(settings.state_dir))
    stored = Profile.from_dict(json.loads(Path(local).read_text()))
    start, end = dt.date.fromisoformat(version.tags["data.start"]), dt.date.fromisoformat(version.tags["data.end"])
    ref_start = max(start, end - dt.timedelta(days=cfg.windows.reference_days - 1))
    reference = load_window(cfg, settings, ref_start, end, as_of=end)
    assert stored.rows == len(reference.frame)

    # the champion's profile exists: one mapped task per day of the current window
    day = dt.date(2026, 2, 2)
    run = _monitor(bag, day)
    mapped = _mapped_states(f"{MODEL}__monitor", run.run_id, "profile_partitions")
    assert mapped == [(i, "success") for i in range(cfg.windows.monitor_days)]
    summary = xcom_return(f"{MODEL}__monitor", run.run_id, "check_model")
    monitor_json = json.loads(Path(summary["report_path"]).read_text())
    drift = monitor_json["drift"]
    assert drift["profile"]["engine"] == "profile"
    assert drift["profile"]["current_partitions"] == cfg.windows.monitor_days

    current = load_window(cfg, settings, day - dt.timedelta(days=cfg.windows.monitor_days - 1), day, as_of=day)
    exact = {f.name: f for f in drift_for_config(cfg, reference.frame, current.frame).features}
    assert drift["current_rows"] == len(current.frame)
    for feature in drift["features"]:
        assert feature["score"] == pytest.approx(exact[feature["name"]].score, abs=1e-9), feature["name"]
        assert feature["drifted"] == exact[feature["name"]].drifted
