"""Unit tests of the registry record's lifecycle fields (retrain_lib.quality.registry_record) and
of a version's deployment history from ledger records (retrain_lib.store.ledger_history)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from retrain_lib.quality import registry_record as rr
from retrain_lib.store.ledger_history import version_history

FEATURES = "age,income|region"


def tags(**overrides) -> dict[str, str]:
    base = {
        "features": FEATURES,
        "features.target": "defaulted",
        "data.fingerprint": "fp-1",
        "config.hash": "cfg-1",
        "version.semantic": "2.3.4",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("current", "expected", "part", "why"),
    [
        # features added -> major, minor and patch reset
        (tags(features="age,debt,income|region"), "3.0.0", "major", "added debt"),
        # a feature moved from numeric to categorical: the signature differs -> major
        (tags(features="age|income,region"), "3.0.0", "major", "feature types changed"),
        # the target changed -> major, even with the same data
        (tags(**{"features.target": "late_90d"}), "3.0.0", "major", "target changed from 'defaulted' to 'late_90d'"),
        # new data (another fingerprint) with the same features -> minor, patch reset
        (tags(**{"data.fingerprint": "fp-2"}), "2.4.0", "minor", "retrained on new data"),
        # new data AND another config: the data decide -> minor
        (tags(**{"data.fingerprint": "fp-2", "config.hash": "cfg-2"}), "2.4.0", "minor", "new data"),
        # no fingerprint: the data cannot be shown to be the same -> minor
        (tags(**{"data.fingerprint": None}), "2.4.0", "minor", "new data"),
        # same data, another config -> patch
        (tags(**{"config.hash": "cfg-2"}), "2.3.5", "patch", "config changed (cfg-1 -> cfg-2)"),
        # same data and config (code or environment only) -> patch
        (tags(), "2.3.5", "patch", "code or environment changed"),
    ],
)
def test_semantic_version_rule(current, expected, part, why):
    bump = rr.next_semantic_version(tags(), current, previous_version="7")
    assert (str(bump.version), bump.part, bump.previous) == (expected, part, "7")
    assert why in bump.reason and "version 7 (2.3.4)" in bump.reason


def test_first_version_is_1_0_0():
    assert str(rr.next_semantic_version(None, tags()).version) == "1.0.0"
    # a previous version registered before semantic versions does not count either
    older = tags(**{"version.semantic": None})
    bump = rr.next_semantic_version(older, tags(features="x|y"))
    assert (str(bump.version), bump.part, bump.previous) == ("1.0.0", "first", None)


def test_a_field_the_previous_version_lacks_shows_no_change():
    previous = tags(features=None, **{"features.target": None})
    bump = rr.next_semantic_version(previous, tags(features="other|x", **{"features.target": "other"}))
    assert (str(bump.version), bump.part) == ("2.3.5", "patch")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1.0.0", (1, 0, 0)),
        (" 10.20.30 ", (10, 20, 30)),
        ("1.0", None),
        ("01.0.0", None),
        ("v1.0.0", None),
        (None, None),
    ],
)
def test_semantic_version_parse(text, parsed):
    got = rr.SemanticVersion.parse(text)
    assert (None if got is None else (got.major, got.minor, got.patch)) == parsed


def _mv(version: str, run_id: str, semantic: str | None):
    return SimpleNamespace(version=version, run_id=run_id, tags={} if semantic is None else {rr.SEMVER_TAG: semantic})


def test_previous_semantic_is_the_newest_tagged_version_of_another_run():
    versions = [_mv("1", "r1", "1.0.0"), _mv("10", "r10", "1.2.0"), _mv("2", "r2", "1.1.0"), _mv("11", "r11", None)]
    assert rr.previous_semantic(versions, run_id="new").version == "10"  # by number, not by string or order
    # a retried registration of run r10 compares with the version before its own
    assert rr.previous_semantic(versions, run_id="r10").version == "2"
    assert rr.previous_semantic([_mv("1", "r1", None)], run_id="new") is None
    assert rr.previous_semantic([], run_id="new") is None


def test_registered_by(monkeypatch):
    env = {"AIRFLOW_CTX_DAG_ID": "credit_default__retrain", "AIRFLOW_CTX_DAG_RUN_ID": "manual__2026-02-11"}
    assert rr.registered_by(env) == "credit_default__retrain/manual__2026-02-11"
    assert rr.registered_by({"AIRFLOW_CTX_DAG_ID": "d"}) == "d"
    monkeypatch.setattr(rr.getpass, "getuser", lambda: "alice")
    assert rr.registered_by({}) == "user:alice"

    def no_login():
        raise OSError("no passwd entry")

    monkeypatch.setattr(rr.getpass, "getuser", no_login)
    assert rr.registered_by({}) == "user:unknown"
    # by default the process environment is read
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "m__retrain")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "r1")
    assert rr.registered_by() == "m__retrain/r1"


@pytest.mark.parametrize(
    ("version_tags", "configured", "status"),
    [
        ({"compliance.status": "pending approval", "approval.answer": "Approve"}, True, "approved"),
        ({"compliance.status": "pending approval", "approval.answer": "Reject"}, True, "rejected"),
        ({"approval.timed_out": "true"}, True, "approval timed out"),
        ({"compliance.status": "pending approval"}, True, "pending approval"),
        ({"compliance.status": "not required"}, True, "not required"),  # the approval step found no reason
        ({"approval": "required"}, None, "pending approval"),  # registered before compliance.status
        ({"approval": "not required"}, True, "not required"),
        ({}, True, "pending approval"),
        ({}, False, "not required"),
        ({}, None, "not required"),
    ],
)
def test_compliance_status(version_tags, configured, status):
    assert rr.compliance_status(version_tags, approval_configured=configured) == status


def test_intended_use_falls_back_to_the_description():
    assert rr.intended_use("  Rank applications. ", "Probability of default.") == ("Rank applications.", "intended_use")
    assert rr.intended_use("", "Probability of default.") == ("Probability of default.", "description")
    assert rr.intended_use("", "") == ("", "none")


def _record(seq, event, *, before=None, after=None, details=None, as_of="2026-02-01", actor="a", reason=""):
    return {
        "seq": seq,
        "time": "2026-02-01T07:00:00+00:00",
        "as_of": as_of,
        "event": event,
        "actor": actor,
        "before": before,
        "after": after,
        "reason": reason,
        "details": details or {},
        "hash": f"h{seq}",
    }


def test_version_history_follows_one_version_through_the_ledger():
    records = [
        _record(0, "monitor", details={"champion_version": "1"}),  # not about a version's deployment
        _record(1, "promote", after="1", details={"moves": [{"alias": "champion", "from": None, "to": "1"}]}),
        _record(2, "gates", details={"run_id": "r2", "passed": True}),
        _record(3, "approval_requested", details={"version": "2", "reasons": ["always"]}),
        _record(4, "approval", details={"version": "2", "answer": "Approve", "by": "bob"}, reason="Approve by bob"),
        _record(
            5,
            "challenger",
            as_of="2026-02-03",
            details={"version": "2", "moves": [{"alias": "challenger", "from": None, "to": "2"}]},
        ),
        _record(6, "rollout_step", details={"version": "2", "percent": 20}),
        _record(
            7,
            "promote",
            before="1",
            after="2",
            details={
                "moves": [
                    {"alias": "champion", "from": "1", "to": "2"},
                    {"alias": "previous-champion", "from": None, "to": "1"},
                    {"alias": "challenger", "from": "2", "to": None},
                ]
            },
        ),
        _record(8, "rollback", before="2", after="1", reason="champion degraded"),  # no moves: the columns count
        _record(
            9, "promote", before="1", after="12", details={"moves": [{"alias": "champion", "from": "1", "to": "12"}]}
        ),
    ]
    two = version_history(records, "2")
    assert [(e.seq, e.event) for e in two] == [
        (3, "approval_requested"),
        (4, "approval"),
        (5, "challenger"),
        (6, "rollout_step"),
        (7, "promote"),
        (8, "rollback"),
    ]
    assert two[1].summary == "approval (answer Approve, by bob)" and two[1].reason == "Approve by bob"
    assert two[2].summary == "challenger: - -> 2" and two[2].effective == "2026-02-03T00:00:00+00:00"
    assert two[3].summary == "rollout_step (percent 20)"
    assert two[4].summary == "champion: 1 -> 2; challenger: 2 -> -"
    assert two[5].summary == "champion: 2 -> 1" and two[5].reason == "champion degraded"
    one = version_history(records, 1)
    assert [e.seq for e in one] == [1, 7, 8, 9]  # "12" is not "1"
    assert one[1].summary == "champion: 1 -> 2; previous-champion: - -> 1"
    assert one[0].to_dict() == {
        "seq": 1,
        "effective": "2026-02-01T00:00:00+00:00",
        "event": "promote",
        "actor": "a",
        "summary": "champion: - -> 1",
        "reason": "",
        "hash": "h1",
    }
    assert version_history(records, "99") == []
