"""The fleet page and ``retrain status`` by pages: page boundaries and links, and a page read
from a real (SQLite) MLflow registry in two queries whatever its size, counted on the real
client (nothing faked)."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("fleet_bench", REPO / "benchmarks" / "fleet_bench.py")
fleet_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fleet_bench)
CountingClient = fleet_bench.CountingClient  # the real MlflowClient, every call counted by name
NAMES = [f"fleet_{c}" for c in "abcdefg"]  # 7 models: pages of 3 are 3 + 3 + 1
REGISTERED = NAMES[:5]  # the last two have a config only


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Seven model configs; five registered (``fleet_a`` with versions 1-2, champion 2 and
    previous-champion 1; the others one champion version each)."""
    from mlflow import MlflowClient

    from retrain_lib.core.settings import load_settings

    root = tmp_path_factory.mktemp("paged")
    cfg = root / "configs"
    shutil.copytree(REPO / "configs", cfg)
    base = yaml.safe_load((cfg / "models" / "credit_default.yaml").read_text())
    for path in (cfg / "models").glob("*.yaml"):
        path.unlink()
    for name in NAMES:
        (cfg / "models" / f"{name}.yaml").write_text(yaml.safe_dump({**base, "name": name}, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        settings = load_settings(cfg)
    (root / "state" / "mlflow").mkdir(parents=True)
    client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
    for name in REGISTERED:
        client.create_registered_model(name, tags={"rollout.mode": "none"})
        versions = 2 if name == "fleet_a" else 1
        for v in range(1, versions + 1):
            client.create_model_version(name, source=f"file:///tmp/{name}/{v}", tags={"metric.roc_auc": f"0.{80 + v}"})
        client.set_registered_model_alias(name, "champion", str(versions))
        if versions == 2:
            client.set_registered_model_alias(name, "previous-champion", "1")
    return settings, client


def _status(fleet, **kwargs):
    from retrain_lib.tools.status import fleet_status

    settings, client = fleet
    counted = CountingClient(client)
    return fleet_status(settings, client=counted, **kwargs), counted.calls


def test_pages_split_the_fleet_in_name_order(fleet):
    pages = [_status(fleet, page=n, per_page=3)[0] for n in (1, 2, 3)]
    assert [[m["model"] for m in p["models"]] for p in pages] == [NAMES[:3], NAMES[3:6], NAMES[6:]]
    assert pages[0]["page"] == {
        "page": 1,
        "per_page": 3,
        "pages": 3,
        "total": 7,
        "first": 1,
        "last": 3,
        "prev": None,
        "next": 2,
    }
    assert (pages[2]["page"]["first"], pages[2]["page"]["last"], pages[2]["page"]["next"]) == (7, 7, None)
    # out of range: clamped to the first and last pages
    assert _status(fleet, page=99, per_page=3)[0]["page"]["page"] == 3
    assert _status(fleet, page=0, per_page=3)[0]["page"]["page"] == 1
    whole = _status(fleet)[0]
    assert [m["model"] for m in whole["models"]] == NAMES and whole["page"]["pages"] == 1


@pytest.mark.parametrize("per_page", [3, 7])
def test_a_page_costs_two_registry_queries_whatever_its_size(fleet, per_page):
    status, calls = _status(fleet, page=1, per_page=per_page)
    assert calls == {"search_registered_models": 1, "search_model_versions": 1}
    a = next(m for m in status["models"] if m["model"] == "fleet_a")
    assert a["aliases"] == {"champion": "2", "previous-champion": "1"} and a["latest_version"] == "2"
    assert a["champion"]["metrics"] == {"roc_auc": 0.82}
    assert a["previous_champion"]["metrics"] == {"roc_auc": 0.81}
    unregistered = [m["model"] for m in status["models"] if not m["registered"]]
    assert unregistered == [n for n in NAMES[:per_page] if n not in REGISTERED]


def test_the_page_query_reads_what_the_per_model_calls_read(fleet):
    """The batched read equals the per-model one, through MLflow and through the SQLite reader."""
    from retrain_lib.store.registry_reader import reader_for
    from retrain_lib.tools.status_registry import registry_state, registry_states

    settings, client = fleet
    ui = settings.platform.mlflow_ui_url
    batched = registry_states(client, NAMES, ui)
    assert batched == {n: registry_state(client, n, ui) for n in NAMES}
    reader = reader_for(settings.tracking_uri, settings.registry_uri)
    try:
        assert registry_states(reader, NAMES, ui) == batched
    finally:
        reader.close()


def _page(settings, query: str) -> str:
    from fastapi.testclient import TestClient
    from retrain_airflow.ui import create_app

    app = TestClient(create_app(lambda: settings, require_auth=False, max_age=0), root_path="/retrain")
    response = app.get(f"/{query}")
    assert response.status_code == 200
    return response.text


def test_the_fleet_page_shows_one_page_and_links_its_neighbours(fleet):
    settings, _ = fleet
    rows = re.compile(r'<tr data-model="([a-z_]+)"')
    middle = _page(settings, "?page=2&per_page=3")
    assert rows.findall(middle) == NAMES[3:6]
    assert 'rel="prev" href="/retrain/?page=1&amp;per_page=3"' in middle
    assert 'rel="next" href="/retrain/?page=3&amp;per_page=3"' in middle
    assert "models 4&ndash;6 of 7" in middle
    first, last = _page(settings, "?page=1&per_page=3"), _page(settings, "?page=3&per_page=3")
    assert 'rel="prev"' not in first and 'rel="next"' in first
    assert rows.findall(last) == NAMES[6:] and 'rel="next"' not in last and 'rel="prev"' in last
    single = _page(settings, "")  # 50 a page by default: all seven, no page links
    assert rows.findall(single) == NAMES and 'aria-label="fleet pages"' not in single


def test_retrain_status_by_pages(fleet, monkeypatch, capsys):
    from retrain_lib.cli.app import main

    settings, _ = fleet
    monkeypatch.setenv("RETRAIN_HOME", str(settings.state_dir))
    argv = ["-q", "--config-dir", str(settings.config_dir), "status", "--per-page", "3"]
    assert main([*argv, "--page", "2"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines()[1:] if line.startswith("fleet_")]
    assert listed == NAMES[3:6]
    assert "page 2 of 3: models 4-6 of 7; next: --page 3 --per-page 3" in out
    assert main([*argv, "--page", "0"]) == 2
    assert "--page and --per-page must be 1 or more" in capsys.readouterr().err
