"""`retrain reproduce`: a registered model version retrained from its DVC training set and
logged config matches the registered model exactly; a model that does not match, tampered data
and unknown versions are reported with the documented exit codes.

Without Airflow: simulated data, the lifecycle's own train/register steps (real MLflow store in
a temporary state dir) and a real data registry (git + DVC, local remote)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from platforms import pin_fixed_policy

from retrain_lib.core.errors import DataError
from retrain_lib.store import lineage, registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
AS_OF = "2026-01-29"


def _train_and_register(settings, *, params: dict | None = None, logged_config=None, key: str = "v1") -> dict:
    """What the retrain path does (snapshot, train, log, register) plus the dvc.* tags on the
    run and the version when the lifecycle does not set them itself yet."""
    from retrain_lib.pipeline import registration, training_run
    from retrain_lib.pipeline.records import Evaluation, GateReport, Snapshot
    from retrain_lib.pipeline.snapshot import training_window
    from retrain_lib.store.data import load_window
    from retrain_lib.store.model_context import ModelContext

    ctx = ModelContext(MODEL, settings)
    if params:
        ctx.cfg = ctx.cfg.model_copy(
            update={"training": ctx.cfg.training.model_copy(update={"params": {**ctx.cfg.training.params, **params}})}
        )
    as_of = dt.date.fromisoformat(AS_OF)
    start, end = training_window(ctx.cfg, as_of)
    window = load_window(ctx.cfg, settings, start, end, as_of=as_of)
    snap = Snapshot(
        model=MODEL,
        as_of=AS_OF,
        start=start.isoformat(),
        end=end.isoformat(),
        fingerprint=window.fingerprint,
    )
    data = lineage.snapshot_training_set(settings, MODEL, window.frame, as_of=AS_OF, fingerprint=window.fingerprint)
    original = ModelContext
    training_run.ModelContext = registration.ModelContext = lambda model, s=None: (
        ctx
    )  # the (possibly edited) config of this test
    try:
        trained = training_run.train_candidate(MODEL, snap, settings=settings, run_key=f"test-{key}")
        client = ctx.client
        if logged_config is not None:  # the run claims another config than the model was trained with
            client.log_dict(trained.run_id, logged_config.model_dump(mode="json"), "config/model.json")
        for key, value in lineage.lineage_tags(data).items():
            if key not in client.get_run(trained.run_id).data.tags:
                client.set_tag(trained.run_id, key, value)
        evaluation = Evaluation(candidate=trained.metrics, champion=None, champion_version=None)
        registered = registration.register_candidate(
            MODEL, snap, trained, evaluation, GateReport(passed=True, results=()), settings=settings
        )
    finally:
        training_run.ModelContext = registration.ModelContext = original
    version = client.get_model_version(MODEL, registered.version)
    for key, value in lineage.lineage_tags(data).items():
        if key not in version.tags:
            client.set_model_version_tag(MODEL, registered.version, key, value)
    return {
        "version": registered.version,
        "data": data,
        "window": window,
        "cfg": ctx.cfg,
        "run_id": trained.run_id,
    }


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """Simulated credit data, version 1 trained and registered as the lifecycle does it."""
    from retrain_lib.core import provenance
    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.simulate import simulate

    tmp = tmp_path_factory.mktemp("reproduce")
    cfg_dir = tmp / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    pin_fixed_policy(cfg_dir)  # these tests check the lifecycle's mechanics on the fixed policy
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(tmp / "state"))
        mp.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
        for var in ("RETRAIN_DATA_ROOT", "RETRAIN_DVC_REMOTE", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.delenv(var, raising=False)
        mp.setattr(provenance, "git_commit", lambda: "0123abcd-test")  # no git in the project checkout
        settings = load_settings(cfg_dir)
        cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml", settings.platform)
        simulate(cfg, settings.data_root, days=33, rows_per_day=400, seed=5)
        v1 = _train_and_register(settings)
        yield {"settings": settings, "cfg_dir": cfg_dir, "v1": v1}


def test_registered_version_is_reproduced_exactly(platform):
    from retrain_lib.tools.reproduce import reproduce

    settings, v1 = platform["settings"], platform["v1"]
    res = reproduce(MODEL, v1["version"], settings=settings)

    assert res["identical"] is True and res["max_abs_prediction_diff"] == 0.0
    assert res["data"] == {
        "path": f"models/{MODEL}/training.parquet",
        "rev": v1["data"]["rev"],
        "md5": v1["data"]["md5"],
    }
    assert res["metrics"]["recorded"] == res["metrics"]["reproduced"]
    logged = res["metrics"]["logged"]
    assert set(logged) >= {"roc_auc", "brier"}
    for name, value in logged.items():  # what training logged is what the registered model scores now
        assert res["metrics"]["recorded"][name] == pytest.approx(value, rel=1e-12, abs=1e-12)
    labelled = int(v1["window"].labelled.shape[0])
    assert res["rows"]["train"] + res["rows"]["holdout"] == labelled
    assert res["rows"]["holdout"] == labelled - round(labelled * 0.75)  # time split, holdout_fraction 0.25
    assert res["config_hash"]["recorded"] == res["config_hash"]["logged_config"] == v1["cfg"].config_hash()
    assert res["git_commit"] == {"recorded": "0123abcd-test", "current": "0123abcd-test"}
    assert res["seed"] == 42 and res["as_of"] == AS_OF and res["warm_start_from"] is None
    json.dumps(res, allow_nan=False)  # printable as strict JSON


def test_cli_json_exit_0_when_identical(platform, capsys):
    from retrain_lib.cli.app import main

    code = main(
        ["reproduce", MODEL, platform["v1"]["version"], "--format", "json", "--config-dir", str(platform["cfg_dir"])]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    res = json.loads(out.out)  # nothing but the JSON on stdout (DVC's hints stay off it)
    assert res["identical"] is True and res["version"] == platform["v1"]["version"]

    assert main(["reproduce", MODEL, platform["v1"]["version"], "--config-dir", str(platform["cfg_dir"])]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{MODEL} version {platform['v1']['version']}: IDENTICAL (max |prediction diff| 0.0")
    assert platform["v1"]["data"]["rev"] in text


def test_model_that_does_not_match_its_record_is_reported(platform, capsys):
    from retrain_lib.cli.app import main
    from retrain_lib.tools.reproduce import reproduce

    settings = platform["settings"]
    # Trained with learning_rate 0.3, but its run claims the shipped config (0.08).
    v2 = _train_and_register(settings, params={"learning_rate": 0.3}, logged_config=platform["v1"]["cfg"], key="v2")
    assert v2["version"] != platform["v1"]["version"] and v2["data"] == platform["v1"]["data"]

    res = reproduce(MODEL, v2["version"], settings=settings)
    assert res["identical"] is False and res["max_abs_prediction_diff"] > 0.0
    assert res["metrics"]["recorded"] != res["metrics"]["reproduced"]

    assert main(["--config-dir", str(platform["cfg_dir"]), "reproduce", MODEL, v2["version"]]) == 1
    assert ": DIFFERENT (" in capsys.readouterr().out


def test_unknown_version_exit_2(platform, capsys):
    from retrain_lib.cli.app import main

    assert main(["--config-dir", str(platform["cfg_dir"]), "reproduce", MODEL, "99"]) == 2
    assert f"no version 99 of registered model '{MODEL}'" in capsys.readouterr().err
    assert main(["--config-dir", str(platform["cfg_dir"]), "reproduce", "no_such_model", "1"]) == 2
    assert main(["--config-dir", str(platform["cfg_dir"]), "reproduce", MODEL, "latest"]) == 2


def test_version_without_lineage_tags_exit_2(platform, capsys):
    from retrain_lib.cli.app import main

    settings, v1 = platform["settings"], platform["v1"]
    client = registry.get_client(settings.tracking_uri, settings.registry_uri)
    tags = lineage.lineage_tags(v1["data"])
    for key in tags:  # as a version trained before the data registry existed
        client.delete_tag(v1["run_id"], key)
        client.delete_model_version_tag(MODEL, v1["version"], key)
    try:
        assert main(["--config-dir", str(platform["cfg_dir"]), "reproduce", MODEL, v1["version"]]) == 2
        assert "lacks the tag(s) ['dvc.path', 'dvc.rev', 'dvc.md5']" in capsys.readouterr().err
    finally:
        for key, value in tags.items():
            client.set_tag(v1["run_id"], key, value)
            client.set_model_version_tag(MODEL, v1["version"], key, value)


def test_tampered_training_set_is_loud(platform, capsys):
    from retrain_lib.cli.app import main
    from retrain_lib.tools.reproduce import reproduce

    settings, v1 = platform["settings"], platform["v1"]
    md5, rev = v1["data"]["md5"], v1["data"]["rev"]
    shutil.rmtree(settings.state_dir / "data-registry" / ".dvc" / "cache")  # read from the remote
    target = settings.state_dir / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]
    saved = target.read_bytes()
    forged = saved.replace(b"north", b"nortH", 1)
    assert forged != saved
    target.chmod(0o644)
    target.write_bytes(forged)
    try:
        with pytest.raises(DataError, match=f"has md5 {hashlib.md5(forged).hexdigest()}, expected {md5}"):
            reproduce(MODEL, v1["version"], settings=settings)
        assert main(["--config-dir", str(platform["cfg_dir"]), "reproduce", MODEL, v1["version"]]) == 2
        err = capsys.readouterr().err
        assert f"data of {MODEL} at DVC rev {rev} (models/{MODEL}/training.parquet" in err
        assert "the data registry was tampered with or corrupted" in err
    finally:
        target.write_bytes(saved)
