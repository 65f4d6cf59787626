"""Bad incoming data, through the real retrain and monitor steps (``retrain_model``,
``monitor_model``) against a platform with a champion: a corrupted parquet partition, a
schema change (new column, missing column, changed dtype), an empty partition and an
all-NaN column, each in one of the newest partitions.

For each: the retrain stops before training (a validation failure with its quarantine and
ledger record, or a ``DataError`` naming the partition), no model version is made and the
champion stays; the monitor either carries on with the validation failure recorded or stops
with a clear error naming the partition (unreadable file, missing column, a numeric feature
that became text); the source partition is left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from harness import champion, make_platform, platform_env, versions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit_default"
DAY = "2026-02-04"  # the newest partition (35 simulated days from 2026-01-01)


def _corrupt(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a partition cut short by a failed upload


def _frame_fault(change):
    def apply(path):
        import pandas as pd

        df = pd.read_parquet(path)
        change(df).to_parquet(path, index=False)

    return apply


def _dtype(df):
    df = df.copy()
    df["income"] = df["income"].map(lambda v: f"{v:,.2f} EUR")  # numbers became formatted text
    return df


def _all_nan(df):
    df = df.copy()
    df["age"] = float("nan")
    return df


# name -> (how the partition is damaged, what the retrain reports, what the monitor reports):
# "error" = a DataError naming the partition, else a validation problem containing this text.
# The newest partition, except the empty one: the day before (freshness_hours would catch an
# empty newest day on its own).
FAULTS = {
    "corrupted_parquet": (_corrupt, "error", "error"),
    "new_column": (_frame_fault(lambda df: df.assign(promo_code="SUMMER")), "promo_code", "promo_code"),
    "missing_column": (_frame_fault(lambda df: df.drop(columns=["income"])), "error", "error"),
    "changed_dtype": (_frame_fault(_dtype), "income", "error"),
    "empty_partition": (_frame_fault(lambda df: df.iloc[:0]), "rows of partition", "rows of partition"),
    "all_nan_column": (_frame_fault(_all_nan), "age", "age"),
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from retrain_lib.pipeline.retrain_run import retrain_model

    root = tmp_path_factory.mktemp("data-faults")

    def keep_validation(raw):  # make_platform's light mode drops it: these tests are about it
        import yaml
        from harness import REPO

        raw["validation"] = yaml.safe_load((REPO / "configs" / "models" / f"{MODEL}.yaml").read_text())["validation"]

    settings, cfg_dir = make_platform(root, edit=keep_validation, days=35, rows_per_day=200)
    with platform_env(root, cfg_dir):
        first = retrain_model(MODEL, "2026-01-30", settings=settings, actor="setup")
        assert first.outcome == "deployed", first
        yield settings, root, cfg_dir


def _train_runs(settings) -> int:
    from retrain_lib.store import registry

    client = registry.get_client(settings.tracking_uri)
    exp = client.get_experiment_by_name(settings.experiment_name(MODEL))
    return len(client.search_runs([exp.experiment_id], "tags.`retrain.kind` = 'train'"))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_bad_partition_is_stopped_before_training(platform, fault, reliability):
    from retrain_lib.core.errors import DataError
    from retrain_lib.pipeline.monitor_run import monitor_model
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.store.audit import Ledger

    reliability("fault")
    settings, root, cfg_dir = platform
    damage, expect, monitor_expect = FAULTS[fault]
    day = "2026-02-03" if fault == "empty_partition" else DAY
    part = settings.data_root / MODEL / f"{day}.parquet"
    original = root / f"{day}.parquet.orig"
    shutil.copy(part, original)
    damage(part)
    damaged = _sha(part)
    ledger = Ledger.from_settings(settings)
    with platform_env(root, cfg_dir):
        try:
            before = {
                "versions": versions(settings),
                "champion": champion(settings),
                "runs": _train_runs(settings),
                "ledger": len(ledger.records()),
            }
            # the retrain path
            if expect == "error":
                with pytest.raises(DataError) as err:
                    retrain_model(MODEL, DAY, settings=settings, actor=f"fault/{fault}")
                assert str(part) in str(err.value), err.value  # the message names the partition
                assert len(ledger.records()) == before["ledger"]
            else:
                res = retrain_model(MODEL, DAY, settings=settings, actor=f"fault/{fault}")
                assert res.outcome == "invalid_data", res
                snap = res.snapshot
                assert not snap.valid and any(expect in p for p in snap.problems), snap.problems
                if fault == "empty_partition":
                    assert any(str(part) in p for p in snap.problems), snap.problems
                quarantine = snap.validation.quarantine
                manifest = json.loads((root / quarantine / "manifest.json").read_text())
                assert str(part) in [f["source"] for f in manifest["files"]]  # the bad file is kept as evidence
                rec = ledger.records(MODEL)[-1]
                assert rec["event"] == "data_validation_failed" and rec["as_of"] == DAY
                assert rec["details"]["quarantine"] == quarantine
            assert versions(settings) == before["versions"]  # nothing registered
            assert champion(settings) == before["champion"]  # nothing moved
            assert _train_runs(settings) == before["runs"]  # nothing trained

            # the monitor on the same day: it reports the problem (or stops on an unreadable file)
            if monitor_expect == "error":
                with pytest.raises(DataError) as err:
                    monitor_model(MODEL, DAY, settings=settings, actor=f"fault/{fault}")
                assert str(part) in str(err.value), err.value
            else:
                mon = monitor_model(MODEL, DAY, settings=settings, actor=f"fault/{fault}")
                assert mon.validation["success"] is False, mon.validation
                assert any(monitor_expect in f for f in mon.validation["failed"]), mon.validation
                assert mon.action != "rollback", mon.reasons
            assert champion(settings) == before["champion"] and versions(settings) == before["versions"]
            assert _sha(part) == damaged  # the source is left as it was (quarantine copies, never moves)
            assert ledger.verify() == []
        finally:
            shutil.copy(original, part)
