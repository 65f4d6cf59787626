"""The serving gateway over real HTTP (uvicorn in a subprocess) against a real MLflow store:
answers and logs predictions, refuses bad input without logging it, follows alias and
rollout-state changes under load without failing a request, and never loses an acknowledged
prediction to a ``kill -9``."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import threading
import time

import httpx
import pytest
from platforms import credit_platform

from retrain_lib.serving import predlog_journal, predlog_read
from retrain_lib.serving.process import GatewayProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit_default"
TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (httpx.HTTPError, sqlite3.Error) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.store import registry

    with credit_platform(tmp_path_factory.mktemp("gateway"), days=35, rows_per_day=300, seed=1) as (settings, cfg, _):
        first = retrain_model(MODEL, "2026-01-30", settings=settings)
        assert first.outcome == "deployed", first
        client = registry.get_client(settings.tracking_uri, settings.registry_uri)
        v1 = client.get_model_version(MODEL, "1")
        v2 = client.create_model_version(MODEL, source=v1.source, run_id=v1.run_id)
        assert v2.version in (2, "2")
        yield settings, cfg, client


@pytest.fixture(scope="module")
def gateway(platform):
    settings, cfg, client = platform
    env = {
        **os.environ,
        "RETRAIN_HOME": str(settings.state_dir),
        "RETRAIN_CONFIG_DIR": str(settings.config_dir),
        "RETRAIN_GATEWAY_TOKEN": TOKEN,
    }
    env.pop("RETRAIN_PREDICTIONS_URL", None)
    gw = GatewayProcess(
        MODEL, refresh_s=0.3, args=["--max-body-bytes", "20000"], env=env, log_path=settings.state_dir / "gateway.log"
    ).start()
    try:
        yield {
            "url": gw.url,
            "proc": gw.proc,
            "db": settings.state_dir / "predictions.db",
            "client": client,
            "cfg": cfg,
            "settings": settings,
        }
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def records(platform):
    settings, cfg, _ = platform
    import pandas as pd

    frame = pd.read_parquet(settings.data_root / MODEL / "2026-01-31.parquet")
    feats = frame[cfg.features.all].astype(object).where(frame[cfg.features.all].notna(), None)
    return [dict(r, application_id=a) for r, a in zip(feats.to_dict("records"), frame["application_id"])]


def _features(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "application_id"}


def _predict(url, recs, *, headers=AUTH, timeout=10.0, **extra):
    return httpx.post(
        f"{url}/v1/models/{MODEL}/predict", json={"records": recs, **extra}, headers=headers, timeout=timeout
    )


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", headers=AUTH, timeout=5).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _rows(gateway, where: str = "1=1", params=()) -> list[tuple]:
    """Rows of the gateway's prediction log, read once its journal is all in the database."""
    _wait_for(
        lambda: _metric(gateway["url"], "retrain_gateway_log_journaled_rows") == 0,
        10,
        "the journal moved into the database",
    )
    con = sqlite3.connect(gateway["db"])
    try:
        return con.execute(
            f"select request_id, version, arm, output, parent_id from predictions where {where}", params
        ).fetchall()
    finally:
        con.close()


def _health(url) -> dict:
    return httpx.get(f"{url}/health", timeout=5).json()["models"][MODEL]


def _set_state(gw, mode, percent=0.0, sticky="", challenger: str | None = "2"):
    from retrain_lib.serving.routing import set_rollout_state

    client = gw["client"]
    if challenger is None:
        try:
            client.delete_registered_model_alias(MODEL, "challenger")
        except Exception:  # noqa: BLE001 - not set
            pass
    else:
        client.set_registered_model_alias(MODEL, "challenger", challenger)
    set_rollout_state(client, MODEL, mode, percent, sticky)
    _wait_for(
        lambda: (
            (h := _health(gw["url"]))["rollout"]
            == {"mode": mode, "canary_percent": float(percent), "sticky_key": sticky}
            and h["challenger"] == challenger
        ),
        10,
        f"the gateway to pick up {mode} {percent} {sticky}",
    )


def test_predict_answers_with_the_champion_version_and_logs_every_prediction(gateway, records):
    import mlflow

    resp = _predict(gateway["url"], [_features(r) for r in records[:3]])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == MODEL
    preds = body["predictions"]
    assert [p["version"] for p in preds] == ["1", "1", "1"]
    assert [p["arm"] for p in preds] == ["champion"] * 3
    # golden: the registered model loaded by MLflow in this process
    import pandas as pd

    mlflow.set_tracking_uri(gateway["settings"].tracking_uri)
    model = mlflow.sklearn.load_model(f"models:/{MODEL}/1")
    expected = model.predict_proba(pd.DataFrame([_features(r) for r in records[:3]]))[:, 1]
    assert [p["prediction"] for p in preds] == pytest.approx(list(expected), abs=1e-9)
    ids = [p["request_id"] for p in preds]
    assert len(set(ids)) == 3
    logged = {r[0]: r for r in _rows(gateway, f"request_id in ({','.join('?' * 3)})", ids)}
    assert set(logged) == set(ids)  # committed before the answer
    assert all(logged[i][1:3] == ("1", "champion") for i in ids)
    assert [logged[i][3] for i in ids] == pytest.approx(list(expected), abs=1e-9)
    one = httpx.post(f"{gateway['url']}/v1/models/{MODEL}/predict", json={"record": records[3]}, headers=AUTH)
    assert one.status_code == 200 and len(one.json()["predictions"]) == 1  # the id column is accepted
    metrics = httpx.get(f"{gateway['url']}/metrics", headers=AUTH).text
    assert f'retrain_gateway_requests_total{{model="{MODEL}",arm="champion",status="200"}}' in metrics
    assert f'retrain_gateway_model_version{{model="{MODEL}",alias="champion"}} 1' in metrics
    assert "retrain_gateway_log_queue_depth" in metrics
    assert "retrain_gateway_request_duration_seconds_bucket" in metrics


def test_a_bad_request_gets_422_naming_each_field_and_nothing_is_logged(gateway, records):
    before = len(_rows(gateway))
    good = _features(records[0])
    bad_type = {**_features(records[1]), "income": "lots"}
    bad_two = {k: v for k, v in _features(records[2]).items() if k != "region"} | {
        "shoe_size": 44,
        "employment_type": 3,
    }
    resp = _predict(gateway["url"], [good, bad_type, bad_two])
    assert resp.status_code == 422, resp.text
    problems = {(p["index"], p["field"]): p["reason"] for p in resp.json()["detail"]}
    assert set(problems) == {(1, "income"), (2, "region"), (2, "shoe_size"), (2, "employment_type")}
    assert "number" in problems[(1, "income")]
    assert "missing" in problems[(2, "region")]
    assert "unexpected" in problems[(2, "shoe_size")]
    assert "string" in problems[(2, "employment_type")]
    assert (
        httpx.post(f"{gateway['url']}/v1/models/{MODEL}/predict", content=b"{not json", headers=AUTH).status_code == 422
    )
    assert _predict(gateway["url"], []).status_code == 422
    assert len(_rows(gateway)) == before  # no half-written batch


MALFORMED = [  # (id, raw body or JSON value, allowed statuses)
    ("not_json", b"{not json", {422}),
    ("empty_body", b"", {422}),
    ("json_null", None, {422}),
    ("json_array", [1, 2, 3], {422}),
    ("json_string", "records", {422}),
    ("records_not_list", {"records": {"income": 1}}, {422}),
    ("record_not_object", {"record": [1, 2]}, {422}),
    ("both_record_and_records", {"record": {}, "records": []}, {422}),
    ("empty_records", {"records": []}, {422}),
    ("records_of_strings", {"records": ["a", "b"]}, {422}),
    ("nested_object_value", "nested", {422}),
    ("nan_and_inf", b'{"record": {"income": NaN, "age": Infinity}}', {422}),
    ("huge_number", "huge", {422}),
    ("bool_for_number", "bool", {422}),
    ("deep_nesting", b'{"record": ' + b"[" * 5000 + b"]" * 5000 + b"}", {413, 422}),
    ("raw_invalid_utf8", b'{"record": {"region": "' + b"\xff\xfe" + b'"}}', {422}),
    ("unknown_top_level", {"records": [], "exec": "rm -rf /"}, {422}),
    ("entity_wrong_type", "entity", {422}),
]


@pytest.mark.parametrize(("case", "body", "allowed"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_get_a_clean_4xx_and_log_nothing(gateway, records, case, body, allowed):
    good = _features(records[0])
    body = (
        {
            "nested": {"record": {**good, "income": {"$gt": 1}}},
            "huge": {"record": {**good, "income": 10**400}},
            "bool": {"record": {**good, "age": True}},
            "entity": {"record": good, "entity": {"id": [1]}},
        }.get(body, body)
        if isinstance(body, str)
        else body
    )
    before = len(_rows(gateway))
    headers = {**AUTH, "content-type": "application/json"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = httpx.post(f"{gateway['url']}/v1/models/{MODEL}/predict", content=content, headers=headers, timeout=10)
    assert resp.status_code in allowed, (resp.status_code, resp.text[:300])
    assert "detail" in resp.json()
    assert len(_rows(gateway)) == before
    assert httpx.get(f"{gateway['url']}/health", timeout=5).status_code == 200


def test_auth_size_limit_and_unknown_model(gateway, records):
    url = gateway["url"]
    recs = [_features(records[0])]
    assert _predict(url, recs, headers={}).status_code == 401
    assert _predict(url, recs, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/health").status_code == 200  # open
    big = [_features(records[i % 50]) for i in range(200)]  # about 40 kB > the 20 kB limit
    assert _predict(url, big).status_code == 413
    resp = httpx.post(f"{url}/v1/models/no_such_model/predict", json={"records": recs}, headers=AUTH)
    assert resp.status_code == 404 and "no_such_model" in resp.text


def test_feedback_stores_known_labels_and_lists_unknown_ids(gateway, records):
    from retrain_lib.serving.predlog_read import read_predictions

    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    ids = [
        p["request_id"] for p in _predict(gateway["url"], [_features(r) for r in records[10:14]]).json()["predictions"]
    ]
    labels = [{"request_id": i, "label": lbl} for i, lbl in zip(ids, [1, 0, 1, 0])]
    ok = httpx.post(f"{gateway['url']}/v1/models/{MODEL}/feedback", json={"labels": labels[:2]}, headers=AUTH)
    assert ok.status_code == 200 and ok.json() == {"stored": 2}
    mixed = httpx.post(
        f"{gateway['url']}/v1/models/{MODEL}/feedback",
        json={"labels": labels[2:] + [{"request_id": "not-a-request", "label": 1}]},
        headers=AUTH,
    )
    assert mixed.status_code == 404
    assert mixed.json()["unknown"] == ["not-a-request"] and mixed.json()["stored"] == 2
    bad = httpx.post(
        f"{gateway['url']}/v1/models/{MODEL}/feedback",
        json={"labels": [{"request_id": ids[0], "label": "yes"}]},
        headers=AUTH,
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "label"
    frame = read_predictions(f"sqlite:///{gateway['db']}", MODEL, since)
    joined = dict(zip(frame["request_id"], frame["label"]))
    assert [joined[i] for i in ids] == [1.0, 0.0, 1.0, 0.0]


def test_replay_sends_records_at_the_rate_and_posts_their_labels(gateway):
    from retrain_lib.serving.replay import replay

    settings, cfg = gateway["settings"], gateway["cfg"]
    day = dt.date(2026, 1, 5)
    t0 = time.monotonic()
    out = replay(
        cfg, settings.data_root, url=gateway["url"], rate=40, days=(day, day), limit=40, token=TOKEN, concurrency=4
    )
    took = time.monotonic() - t0
    assert out["sent"] == 40 and out["ok"] == 40 and out["errors"] == 0, out
    assert took >= 0.9  # 40 records at 40/s
    assert out["labels_posted"] == 40 and out["labels_unknown"] == 0  # day 5's labels have all arrived
    assert out["p50_ms"] is not None and out["p99_ms"] >= out["p50_ms"]


def test_shadow_logs_the_challenger_off_the_request_path_and_answers_from_the_champion(gateway, records):
    _set_state(gateway, "shadow", challenger="2")
    try:
        answers = [
            p
            for i in range(10)
            for p in _predict(gateway["url"], [_features(records[20 + 2 * i]), _features(records[21 + 2 * i])]).json()[
                "predictions"
            ]
        ]
        assert {(p["version"], p["arm"]) for p in answers} == {("1", "champion")}
        ids = [p["request_id"] for p in answers]
        marks = ",".join("?" * len(ids))
        shadow = _wait_for(
            lambda: (rows := _rows(gateway, f"parent_id in ({marks})", ids)) and len(rows) == len(ids) and rows,
            10,
            "the shadow rows",
        )
        assert {(r[1], r[2]) for r in shadow} == {("2", "shadow")}
        assert {r[4] for r in shadow} == set(ids)
        # the challenger is the same artifact here: its shadow outputs equal the answers
        by_parent = {r[4]: r[3] for r in shadow}
        assert [by_parent[p["request_id"]] for p in answers] == pytest.approx([p["prediction"] for p in answers])
    finally:
        _set_state(gateway, "none", challenger=None)


def test_canary_routes_the_configured_share_and_a_sticky_entity_keeps_its_arm(gateway, records):
    import math

    _set_state(gateway, "canary", 30, challenger="2")
    try:
        answers = [
            p
            for i in range(4)
            for p in _predict(gateway["url"], [_features(r) for r in records[:100]]).json()["predictions"]
        ]
        n = len(answers)
        hits = sum(p["arm"] == "challenger" for p in answers)
        assert abs(hits - 0.3 * n) <= 4 * math.sqrt(n * 0.3 * 0.7), hits
        assert {p["version"] for p in answers if p["arm"] == "challenger"} == {"2"}
        assert {p["version"] for p in answers if p["arm"] == "champion"} == {"1"}
        logged = _rows(gateway, "arm='challenger'")
        assert {r[0] for r in logged} >= {p["request_id"] for p in answers if p["arm"] == "challenger"}

        _set_state(gateway, "canary", 50, sticky="application_id", challenger="2")
        batch = records[:60]
        first = [p["arm"] for p in _predict(gateway["url"], batch).json()["predictions"]]
        again = [p["arm"] for p in _predict(gateway["url"], batch).json()["predictions"]]
        assert first == again and set(first) == {"champion", "challenger"}
        # the entity can come as "entity" instead of a record column
        via_entity = [
            p["arm"]
            for p in _predict(
                gateway["url"], [_features(r) for r in batch], entity=[r["application_id"] for r in batch]
            ).json()["predictions"]
        ]
        assert via_entity == first
    finally:
        _set_state(gateway, "none", challenger=None)


def test_a_sticky_canary_entity_never_goes_back_to_the_old_version_when_the_challenger_is_promoted(gateway, records):
    """Promotion at the end of a sticky canary (``promote_champion``: champion moves to the
    challenger's version, then the challenger alias goes): requests keep coming for the same
    entities throughout, and no entity answered by the new version is ever answered by the old
    one afterwards; the entities of the champion arm end on the new version too."""
    from retrain_lib.store import registry

    client = gateway["client"]
    before = registry.aliases(client, MODEL)
    _set_state(gateway, "canary", 50, sticky="application_id", challenger="2")
    batch = records[:60]
    seen: dict[str, list[str]] = {str(r["application_id"]): [] for r in batch}
    stop = threading.Event()
    failed: list[str] = []

    def traffic():
        while not stop.is_set():
            r = _predict(gateway["url"], batch)
            if r.status_code != 200:
                failed.append(r.text)
                continue
            for rec, p in zip(batch, r.json()["predictions"]):
                seen[str(rec["application_id"])].append(p["version"])

    try:
        first = {
            str(r["application_id"]): p["version"]
            for r, p in zip(batch, _predict(gateway["url"], batch).json()["predictions"])
        }
        assert set(first.values()) == {"1", "2"}
        worker = threading.Thread(target=traffic)
        worker.start()
        time.sleep(0.5)
        registry.promote_champion(client, MODEL, "2", expected_champion="1")
        _wait_for(
            lambda: _health(gateway["url"])["champion"] == "2" and _health(gateway["url"])["challenger"] is None,
            10,
            "the promotion served",
        )
        time.sleep(0.5)
        stop.set()
        worker.join(30)
        assert not failed, failed[:3]
        for entity, versions in seen.items():
            assert versions and versions[-1] == "2", (entity, versions[-5:])
            back = [i for i in range(1, len(versions)) if versions[i - 1] == "2" and versions[i] == "1"]
            assert not back, f"entity {entity} went back to version 1: {versions}"
            if first[entity] == "2":
                assert set(versions) == {"2"}, (entity, versions)
    finally:
        stop.set()
        registry.restore_aliases(client, MODEL, before)
        _set_state(gateway, "none", challenger=None)


def test_an_alias_move_under_load_fails_no_request_and_takes_effect_within_seconds(gateway, records):
    url, client = gateway["url"], gateway["client"]
    stop = threading.Event()
    results: list[tuple[float, int, str | None]] = []

    def load():
        with httpx.Client(headers=AUTH, timeout=10) as http:
            i = 0
            while not stop.is_set():
                try:
                    r = http.post(
                        f"{url}/v1/models/{MODEL}/predict", json={"record": _features(records[i % len(records)])}
                    )
                    version = r.json()["predictions"][0]["version"] if r.status_code == 200 else None
                    results.append((time.monotonic(), r.status_code, version))
                except httpx.HTTPError as exc:
                    results.append((time.monotonic(), -1, type(exc).__name__))
                i += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        moved_at = time.monotonic()
        client.set_registered_model_alias(MODEL, "champion", "2")
        _wait_for(lambda: any(v == "2" for _, _, v in results[-5:]), 10, "answers from version 2")
        switched = min(t for t, _, v in results if v == "2")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        client.set_registered_model_alias(MODEL, "champion", "1")
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:5]
    assert len(results) > 20
    assert switched - moved_at < 5.0
    after = [v for t, _, v in results if t > switched + 0.5]
    assert after and set(after) == {"2"}  # no flapping back once swapped
    _wait_for(lambda: _health(url)["champion"] == "1", 10, "champion back to 1")


def test_kill_9_under_load_loses_no_acknowledged_prediction(gateway, records):
    """Runs last: it kills the module's gateway."""
    url, proc = gateway["url"], gateway["proc"]
    acked: list[str] = []
    singles = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def load(offset, single):
        # single records are scored on the gateway's event loop, pairs in its prediction pool
        with httpx.Client(headers=AUTH, timeout=5) as http:
            i = offset
            while not stop.is_set():
                body = (
                    {"record": _features(records[i % len(records)])}
                    if single
                    else {"records": [_features(records[i % len(records)]), _features(records[(i + 1) % len(records)])]}
                )
                try:
                    r = http.post(f"{url}/v1/models/{MODEL}/predict", json=body)
                except httpx.HTTPError:
                    if proc.poll() is not None:
                        return
                    continue
                if r.status_code == 200:
                    with lock:
                        acked.extend(p["request_id"] for p in r.json()["predictions"])
                        singles[0] += single
                i += 2

    threads = [threading.Thread(target=load, args=(k * 37, k % 2 == 0)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) > 20, len(acked)
    assert singles[0] > 10 and len(acked) - singles[0] > 10, (singles, len(acked))  # both request paths ran
    journal = predlog_journal.journal_dir(gateway["db"])
    left = list(journal.glob("*.jsonl"))
    assert left, "the killed gateway left no journal segment"
    con = sqlite3.connect(gateway["db"])
    try:
        before = {r[0] for r in con.execute("select request_id from predictions")}
    finally:
        con.close()
    # What the monitor reads: the dead gateway's journal is moved into the database first.
    stored = set(
        predlog_read.read_predictions(f"sqlite:///{gateway['db']}", MODEL, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))[
            "request_id"
        ]
    )
    assert not list(journal.glob("*.jsonl")), "recovered segments are deleted"
    print(
        f"{len(acked)} acknowledged, {len([i for i in acked if i not in before])} of them only in the journal "
        f"at the kill"
    )
    missing = [i for i in acked if i not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged predictions lost"


def test_the_refresher_makes_no_registry_call_while_nothing_is_committed_and_follows_a_move(platform, monkeypatch):
    """With the embedded (SQLite) registry, a poll with nothing committed since the last one
    costs no registry call; an alias move is still followed at the next poll, and a full poll
    still runs every ``FULL_REFRESH_S``."""
    from retrain_lib.serving import refresher
    from retrain_lib.serving import service as gateway_mod
    from retrain_lib.store import registry

    settings, _, client = platform
    calls: list[str] = []

    class CountingClient:
        def __init__(self, inner):
            self.inner = inner

        def get_registered_model(self, name):
            calls.append(name)
            return self.inner.get_registered_model(name)

        def __getattr__(self, attr):
            return getattr(self.inner, attr)

    before = str(client.get_model_version_by_alias(MODEL, "champion").version)
    target = "2" if before == "1" else "1"
    gw = gateway_mod.Gateway(settings, [MODEL], refresh_s=60, log_url=None, log_predictions=False)
    assert gw._probe is not None, "the platform's registry is a SQLite file"
    gw._client = CountingClient(registry.get_client(settings.tracking_uri, settings.registry_uri))
    slot = gw.slots[MODEL]
    try:
        gw.refresh_all()
        assert calls == [MODEL] and slot.deployment.key[0] == before
        for _ in range(5):
            gw.refresh_all()
        assert calls == [MODEL], "nothing committed, yet the registry was asked"

        client.set_registered_model_alias(MODEL, "champion", target)
        gw.refresh_all()
        assert len(calls) == 2 and slot.deployment.key[0] == target
        gw.refresh_all()
        assert len(calls) == 2

        monkeypatch.setattr(refresher, "FULL_REFRESH_S", 0.0)
        gw.refresh_all()
        assert len(calls) == 3 and slot.deployment.key[0] == target
    finally:
        client.set_registered_model_alias(MODEL, "champion", before)
        gw.stop()


def test_a_pinned_gateway_serves_its_version_and_the_probe_reports_answers_skew_and_load_failures(platform, records):
    """``retrain serve --pin`` serves the pinned version whatever the aliases say; the
    servability probe (a fresh process, real HTTP) counts answers, compares them with the
    expected scores and reports a version that cannot be loaded instead of raising."""
    from retrain_lib.core.metrics import predict_scores
    from retrain_lib.serving.probe import probe_env, probe_served
    from retrain_lib.serving.schema import FeatureSchema
    from retrain_lib.store import registry

    settings, cfg, client = platform
    assert registry.aliases(client, MODEL)["champion"] == "1"
    with GatewayProcess(MODEL, args=["--pin", f"{MODEL}=2", "--no-log"], env=probe_env(settings)) as gw:
        assert _health(gw.url)["champion"] == "2"

    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    model = mlflow.sklearn.load_model(f"models:/{MODEL}/2")
    recs = [_features(r) for r in records[:20]]
    expected = [float(v) for v in predict_scores(model, FeatureSchema.from_config(cfg).frame(recs), cfg.task)]

    good = probe_served(settings, MODEL, "2", recs, expected, requests=30)
    assert good.ok and good.loaded and (good.answered, good.mismatched) == (30, 0), good
    assert good.max_abs_diff is not None and good.max_abs_diff <= 1e-6
    assert good.p95_ms is not None and good.p95_ms >= good.p50_ms > 0

    skewed = probe_served(settings, MODEL, "2", recs, [v + 0.01 for v in expected], requests=10)
    assert skewed.loaded and skewed.answered == 10 and skewed.mismatched == 10 and not skewed.ok

    missing = probe_served(settings, MODEL, "999", recs, expected, requests=10, timeout_s=60)
    assert not missing.loaded and not missing.ok and missing.answered == 0
    assert "could not load" in missing.error and "999" in missing.error, missing.error
