"""`make demo`'s driver, end to end in a fresh state directory (one demo run per test session,
``tests/e2e/conftest.py``): a healthy period without retrains, then drifts that lead to
retrain, gates and promotion, told as the ledger saw it; the live part (gateway, canary,
automatic rollback); and the fleet page on the state it wrote.

The fleet page in a real browser: `airflow api-server` on the state `make demo` wrote,
the page rendered by headless Chromium (Debian's `chromium`), its numbers checked against the
MLflow registry and the decision ledger read here independently, and a screenshot saved.

The screenshot goes to ``build/screenshots/fleet.png`` in the repository (the README names
it), or to ``$RETRAIN_SCREENSHOT_DIR/fleet.png``. Without Chromium the test is skipped, or
fails under ``RETRAIN_STRICT=1`` (``make test`` installs it first: ``make browser``).

Every test of the demo's state lives in this one module so that pytest-xdist (``--dist
loadfile``) runs them on one worker and the demo runs once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1100)]
REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(2026-\d\d-\d\d)\s+(\w+)\s+(retrain|healthy)\s+(\S+)\s+(.*)$")


def test_demo_tells_the_story(demo_run):
    proc = demo_run.proc  # the demo run of tests/e2e/conftest.py (--days 46 --rows-per-day 800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [m.groups() for line in proc.stdout.splitlines() if (m := ROW.match(line))]
    assert rows, proc.stdout
    drift_day = "2026-02-09"
    for model in ("credit_default", "daily_demand"):
        mine = [r for r in rows if r[1] == model]
        assert len(mine) == 46 - 29 + 1
        first = mine[0]
        assert first[2] == "retrain" and "v1 promoted" in first[4]
        healthy_period = [r for r in mine[1:] if r[0] < drift_day]
        assert healthy_period and all(r[2] == "healthy" for r in healthy_period), healthy_period
        after = [r for r in mine if r[0] >= drift_day and "promoted" in r[4]]
        assert after, f"{model}: no retrain was promoted after the drift:\n{proc.stdout}"
    credit_retrains = [r for r in rows if r[1] == "credit_default" and r[0] >= drift_day and r[2] == "retrain"]
    assert any(f in credit_retrains[0][4] for f in ("income", "credit_utilization", "region")), credit_retrains[0]
    demand_retrains = [r for r in rows if r[1] == "daily_demand" and r[0] >= drift_day and r[2] == "retrain"]
    assert "performance" in demand_retrains[0][4] or "rmse" in demand_retrains[0][4], demand_retrains[0]
    assert re.search(r"credit_default: champion v[2-9]", proc.stdout)
    assert "chain intact" in proc.stdout
    assert (demo_run.state_dir / "demo.log").stat().st_size > 0


def test_demo_live_part_promotes_a_canary_and_rolls_a_bad_champion_back(demo_run):
    """What the live part did, read from the stores it wrote (not from the story): the Airflow
    runs, the ledger, the registry and the prediction log."""
    import sqlite3

    from retrain_lib import registry
    from retrain_lib.audit import Ledger

    assert demo_run.proc.returncode == 0, demo_run.proc.stdout[-3000:] + demo_run.proc.stderr[-3000:]
    state = demo_run.state_dir
    model = "credit_default"
    airflow = sqlite3.connect(state / "airflow" / "airflow.db")
    runs = dict(airflow.execute("select dag_id || '/' || run_id, state from dag_run where dag_id like ?",
                                (f"{model}__%",)).fetchall())
    rollout_runs = {k: v for k, v in runs.items() if k.startswith(f"{model}__rollout/")}
    assert list(rollout_runs.values()) == ["success"], rollout_runs
    ti = dict(airflow.execute("select task_id, state from task_instance where dag_id = ? and run_id = ?",
                              (f"{model}__rollout", next(iter(rollout_runs)).split("/", 1)[1])).fetchall())
    assert ti["promote_challenger"] == "success" and ti["rollback_challenger"] == "skipped", ti
    assert ti["judge_step_1"] == "success" and ti["canary_passed"] == "success", ti
    rolled = airflow.execute("select count(*) from task_instance where dag_id = ? and task_id = 'rollback_champion' "
                             "and state = 'success'", (f"{model}__monitor",)).fetchone()[0]
    assert rolled == 1

    records = Ledger(f"sqlite:///{state / 'platform.db'}").records(model)
    canary = [r for r in records if r["event"] == "promote" and r["details"].get("mode") == "canary"]
    by_hand = [r for r in records if r["event"] == "promote" and r["details"].get("mode") == "by_hand"]
    rollbacks = [r for r in records if r["event"] == "rollback"]
    assert len(canary) == 1 and len(by_hand) == 1 and len(rollbacks) == 1, [r["event"] for r in records]
    good, bad = canary[0]["after"], by_hand[0]["after"]
    assert by_hand[0]["before"] == good and (rollbacks[0]["before"], rollbacks[0]["after"]) == (bad, good)
    steps = [r["details"] for r in records if r["event"] == "rollout_canary"]
    assert steps and all(s["decision"] == "promote" and s["labelled"]["challenger"] > 0 for s in steps)
    monitor = [r for r in records if r["event"] == "monitor" and r["seq"] > by_hand[0]["seq"]]
    assert monitor and monitor[0]["details"]["action"] == "rollback"
    serving = next(s for s in monitor[0]["details"]["signals"] if s["signal"] == "serving")
    assert serving["triggered"] and serving["detail"]["champion_live"] < serving["detail"]["previous_live"]

    client = registry.get_client(f"sqlite:///{state / 'mlflow' / 'mlflow.db'}")
    assert registry.aliases(client, model)["champion"] == good
    assert client.get_model_version(model, bad).tags.get("promoted_by_hand") == "demo/on-call"

    log = sqlite3.connect(state / "predictions.db")
    served = dict(log.execute("select version, count(*) from predictions where model = ? and arm = 'champion' "
                              "group by version", (model,)).fetchall())
    assert served.get(good, 0) > 0 and served.get(bad, 0) >= 200, served
    assert log.execute("select count(*) from predictions where error is not null").fetchone()[0] == 0
    assert log.execute("select count(*) from feedback").fetchone()[0] > 0


# -----------------------------------------------------------------------------------------
# The fleet page in Chromium
# -----------------------------------------------------------------------------------------

BIN = Path(sys.executable).parent
MODELS = ("credit_default", "daily_demand")
STARTUP_TIMEOUT = 90
BROWSER_TIMEOUT = 60


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Fields(HTMLParser):
    """``data-field`` texts of each ``data-model`` row/section, and the ``data-seq``/``data-event``
    rows of each model section, from a rendered DOM."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}  # fleet table rows
        self.sections: dict[str, dict[str, str]] = {}  # per-model sections
        self.decisions: dict[str, list[tuple[int, str]]] = {}
        self._stack: list[tuple[str, str | None, dict | None]] = []  # tag, model, target
        self._field: tuple[dict, str, int] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        model, target = (self._stack[-1][1], self._stack[-1][2]) if self._stack else (None, None)
        if tag == "tr" and a.get("data-model"):
            model, target = a["data-model"], self.rows.setdefault(a["data-model"], {})
        elif tag == "section" and a.get("data-model"):
            model, target = a["data-model"], self.sections.setdefault(a["data-model"], {})
        if tag == "tr" and a.get("data-seq") and model:
            self.decisions.setdefault(model, []).append((int(a["data-seq"]), a.get("data-event", "")))
        if a.get("data-field") and target is not None and self._field is None:
            self._field = (target, a["data-field"], len(self._stack))
            self._text = []
            if a.get("data-seq") is not None:
                target[a["data-field"] + ":seq"] = a["data-seq"]
        if tag not in VOID:
            self._stack.append((tag, model, target))

    def handle_endtag(self, tag):
        if tag in VOID or all(t != tag for t, *_ in self._stack):
            return
        while self._stack:
            t, *_ = self._stack.pop()
            if self._field is not None and len(self._stack) == self._field[2]:
                target, name, _ = self._field
                target.setdefault(name, " ".join("".join(self._text).split()))
                self._field = None
            if t == tag:
                break

    def handle_data(self, data):
        if self._field is not None:
            self._text.append(data)


def _v(version) -> str:
    return f"v{version}" if version else "-"


@pytest.fixture
def api_server(demo_run, tmp_path):
    """`airflow api-server` on the demo's Airflow home and platform state (every user an admin)."""
    from retrain_airflow.demo import airflow_env

    assert demo_run.proc.returncode == 0, demo_run.proc.stdout[-2000:] + demo_run.proc.stderr[-2000:]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **airflow_env(demo_run.state_dir),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True", "AIRFLOW__API__BASE_URL": base,
           "AIRFLOW__API__PORT": str(port), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "api-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", "1"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"airflow api-server exited with {proc.returncode}:\n{_tail(log)}")
            try:
                status, _ = _get(f"{base}/api/v2/monitor/health", timeout=5)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"airflow api-server not healthy after {STARTUP_TIMEOUT} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield base, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _chrome(browser: str, *args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=BROWSER_TIMEOUT)


def test_fleet_page_in_chromium_matches_registry_and_ledger(request, tmp_path):
    browser = _chromium()
    if browser is None:
        message = "Debian's chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("RETRAIN_STRICT") == "1":
            pytest.fail(message)
        pytest.skip(message)
    demo = request.getfixturevalue("demo_run")
    base, log = request.getfixturevalue("api_server")

    dom = _chrome(browser, "--virtual-time-budget=10000", "--dump-dom", f"{base}/retrain/", profile=tmp_path / "p1")
    assert dom.returncode == 0 and "Model fleet" in dom.stdout, (dom.stderr[-2000:], _tail(log))
    page = _Fields()
    page.feed(dom.stdout)

    # The registry and the ledger, read here without the code under test.
    from mlflow.tracking import MlflowClient

    from retrain_lib.audit import Ledger

    uri = f"sqlite:///{demo.state_dir / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # not the process's registry URI of earlier tests
    ledger = Ledger(f"sqlite:///{demo.state_dir / 'platform.db'}")
    for model in MODELS:
        aliases = {k: str(v) for k, v in client.get_registered_model(model).aliases.items()}
        assert aliases.get("champion"), f"{model}: the demo promoted no champion"
        row, section = page.rows.get(model), page.sections.get(model)
        assert row and section, f"{model} missing from the page: {sorted(page.rows)}"
        for alias in ("champion", "challenger", "previous-champion"):
            assert row[alias] == _v(aliases.get(alias)), (model, alias, row, aliases)
            assert section[alias] == _v(aliases.get(alias)), (model, alias, section, aliases)
        records = ledger.records(model)
        monitors = [r for r in records if r["event"] == "monitor"]
        last = monitors[-1]
        assert row["last-check"] == last["as_of"]
        assert row["action"] == last["details"]["action"]
        assert row["drifted-share"] == f"{last['details']['drifted_share']:.0%}"
        assert section["drifted-share"] == f"{last['details']['drifted_share']:.0%}"
        decisions = [r for r in records if r["event"] != "monitor"]
        shown = page.decisions.get(model, [])
        assert shown == [(r["seq"], r["event"]) for r in reversed(decisions)][:len(shown)] and len(shown) == min(
            5, len(decisions)), (model, shown)
        changes = [r for r in decisions if r["event"] in ("promote", "rollback", "challenger", "reject")]
        assert row["last-decision:seq"] == str(changes[-1]["seq"])
        gates = [r for r in records if r["event"] == "gates"]
        assert row["gates"] == ("passed" if gates[-1]["details"]["passed"] else "failed")

    # The drift report the page links to is served from the reports directory, and only from there.
    status, body = _get(f"{base}/retrain/api/status/credit_default")
    assert status == 200
    mon = json.loads(body)["models"][0]["last_monitor"]
    assert mon["drift_report"], mon
    status, body = _get(f"{base}/retrain/reports/{mon['drift_report']}")
    assert status == 200 and b"<html" in body[:2000].lower()
    assert _get(f"{base}/retrain/reports/%2e%2e/platform.db")[0] == 404

    # The extra links of the drift and gate tasks of the latest runs point where their ledger records do.
    for dag_id, task_id, event in (("credit_default__monitor", "check_model", "monitor"),
                                   ("credit_default__retrain", "check_gates", "gates")):
        status, body = _get(f"{base}/api/v2/dags/{dag_id}/dagRuns?order_by=-logical_date&limit=1")
        assert status == 200, body[:500]
        run_id = json.loads(body)["dag_runs"][0]["dag_run_id"]
        status, body = _get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}/taskInstances/"
                            f"{task_id}/links")
        assert status == 200, body[:500]
        links = json.loads(body)["extra_links"]
        rec = next(r for r in reversed(ledger.records("credit_default"))
                   if r["event"] == event and r["actor"] == f"{dag_id}/{run_id}")
        mlflow_run = rec["details"].get("mlflow_run_id") or rec["details"]["run_id"]
        assert links["MLflow run"].endswith(f"/#/runs/{mlflow_run}"), links
        if task_id == "check_model":
            rel = Path(rec["details"]["drift_report"]).relative_to(demo.state_dir / "reports").as_posix()
            assert links["Drift report"] == f"/retrain/reports/{rel}", links
            assert _get(f"{base}{links['Drift report']}")[0] == 200
        else:
            assert links["Drift report"] is None, links

    out_dir = Path(os.environ.get("RETRAIN_SCREENSHOT_DIR") or REPO / "build" / "screenshots")
    out_dir.mkdir(parents=True, exist_ok=True)
    shot = out_dir / "fleet.png"
    shot.unlink(missing_ok=True)
    (out_dir / "fleet.html").write_text(dom.stdout)
    png = _chrome(browser, "--virtual-time-budget=10000", "--window-size=1400,2400", f"--screenshot={shot}",
                  f"{base}/retrain/", profile=tmp_path / "p2")
    assert png.returncode == 0 and shot.is_file(), png.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
