"""Sample data with a known drift, for demos, tests and backtests.

Two scenarios with a realistic signal:

* ``credit``: credit applications and whether the applicant defaulted (classification);
* ``demand``: units sold per store and day (regression).

From the drift day on, either the inputs shift (``covariate``: poorer applicants, higher
utilisation, a different region mix; or higher prices and a heat wave) or the relation
between inputs and target changes (``concept``: the same inputs, a different risk / price
elasticity). Labels of the events of day *d* are written to the label partition of day
*d + label_delay_days*, so they only become visible after the delay.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import ConfigError
from retrain_lib.pipeline.snapshot import snapshot_data
from retrain_lib.pipeline.training_run import train_candidate
from retrain_lib.store import registry
from retrain_lib.store.data import partition_path, resolve_dir, write_partition

DRIFT_KINDS = ("covariate", "concept", "none")


@dataclass(frozen=True)
class SimulationResult:
    out_dir: Path
    days: int
    rows: int
    start: dt.date
    drift_start: dt.date | None
    feature_files: int
    label_files: int


def _credit_day(rng: np.random.Generator, n: int, drifted: bool, kind: str) -> tuple[pd.DataFrame, np.ndarray]:
    cov = drifted and kind == "covariate"
    concept = drifted and kind == "concept"
    regions = np.array(["north", "south", "east", "west"])
    region_p = [0.15, 0.25, 0.2, 0.4] if cov else [0.3, 0.25, 0.25, 0.2]
    region = rng.choice(regions, n, p=region_p)
    employment = rng.choice(
        ["salaried", "self_employed", "unemployed", "retired"],
        n,
        p=[0.55, 0.2, 0.15, 0.1] if cov else [0.65, 0.2, 0.05, 0.1],
    )
    region_income = pd.Series(region).map({"north": 0.1, "south": -0.1, "east": 0.0, "west": 0.05}).to_numpy()
    income = np.exp(rng.normal(np.log(52_000) + region_income - (0.3 if cov else 0.0), 0.45, n)).round(0)
    debt_to_income = (rng.beta(2, 5, n) * (1.0 if cov else 0.8)).round(4)
    credit_utilization = (rng.beta(3.5, 2, n) if cov else rng.beta(2, 3, n)).round(4)
    age = np.clip(rng.normal(42, 12, n), 18, 85).round(0)
    late = rng.poisson(1.0 if cov else 0.5, n).astype(float)
    loan = np.exp(rng.normal(np.log(15_000), 0.6, n)).round(0)
    unemployed = (employment == "unemployed").astype(float)
    if concept:
        # The same applicants, but utilisation stops mattering and young borrowers with
        # large loans become the risky ones (e.g. after a change of lending policy).
        logit = (
            -1.3
            + 0.2 * (credit_utilization - 0.4)
            + 1.0 * (debt_to_income - 0.23) * 4
            + 0.1 * late
            - 0.2 * (np.log(income) - 10.85)
            - 0.06 * (age - 42)
            + 1.2 * np.log(loan / 15_000)
            + 0.2 * unemployed
        )
    else:
        logit = (
            -1.6
            + 3.2 * (credit_utilization - 0.4)
            + 2.4 * (debt_to_income - 0.23) * 4
            + 0.55 * late
            - 1.1 * (np.log(income) - 10.85)
            - 0.012 * (age - 42)
            + 0.25 * np.log(loan / 15_000)
            + 0.9 * unemployed
        )
    target = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    # A few missing incomes, as in real application data.
    income = income.astype(float)
    income[rng.random(n) < 0.01] = np.nan
    frame = pd.DataFrame(
        {
            "income": income,
            "debt_to_income": debt_to_income,
            "credit_utilization": credit_utilization,
            "age": age,
            "num_late_payments": late,
            "loan_amount": loan,
            "region": region,
            "employment_type": employment,
        }
    )
    return frame, target


def _demand_day(
    rng: np.random.Generator, n: int, drifted: bool, kind: str, day: dt.date, season_day: dt.date | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    cov = drifted and kind == "covariate"
    concept = drifted and kind == "concept"
    store_type = rng.choice(["small", "medium", "large"], n, p=[0.5, 0.35, 0.15])
    base_size = pd.Series(store_type).map({"small": 300.0, "medium": 800.0, "large": 2000.0}).to_numpy()
    store_size = (base_size * rng.lognormal(0, 0.15, n)).round(0)
    season = 12 + 8 * np.sin(2 * np.pi * ((season_day or day).timetuple().tm_yday - 110) / 365)
    temperature = (rng.normal(season + (9 if cov else 0), 4, n)).round(1)
    price = (rng.normal(13.0 if cov else 10.0, 1.5, n)).clip(2, None).round(2)
    discount = (rng.choice([0, 0.1, 0.2, 0.3], n, p=[0.4, 0.2, 0.2, 0.2] if cov else [0.7, 0.15, 0.1, 0.05])).round(2)
    promo = rng.choice(["yes", "no"], n, p=[0.5, 0.5] if cov else [0.2, 0.8])
    dow = np.full(n, float(day.weekday()))
    weekend = (dow >= 5).astype(float)
    elasticity = -0.03 if concept else -0.12
    log_mu = (
        np.log(store_size / 20)
        + elasticity * (price * (1 - discount) - 10)
        + 0.02 * (temperature - 15)
        + 0.25 * weekend
        + (0.05 if concept else 0.3) * (promo == "yes")
        + (0.6 * (store_type == "small") if concept else 0)
    )
    units = rng.poisson(np.exp(log_mu)).astype(float)
    frame = pd.DataFrame(
        {
            "temperature": temperature,
            "price": price,
            "discount": discount,
            "day_of_week": dow,
            "store_size": store_size,
            "store_type": store_type,
            "promo": promo,
        }
    )
    return frame, units


SCENARIOS = {
    "credit": [
        "income",
        "debt_to_income",
        "credit_utilization",
        "age",
        "num_late_payments",
        "loan_amount",
        "region",
        "employment_type",
    ],
    "demand": ["temperature", "price", "discount", "day_of_week", "store_size", "store_type", "promo"],
}


def pick_scenario(cfg: ModelConfig, scenario: str | None = None) -> str:
    if scenario is None:
        scenario = "credit" if cfg.task == "classification" else "demand"
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; use one of {sorted(SCENARIOS)}")
    missing = [f for f in cfg.features.all if f not in SCENARIOS[scenario]]
    if missing:
        raise ConfigError(
            f"model {cfg.name!r} declares feature(s) {missing} that the {scenario!r} scenario does not generate; "
            f"it generates {SCENARIOS[scenario]}"
        )
    return scenario


def simulate(
    cfg: ModelConfig,
    out_dir: Path,
    *,
    days: int,
    start: dt.date = dt.date(2026, 1, 1),
    drift_day: int | None = None,
    drift_kind: str = "covariate",
    rows_per_day: int = 1500,
    seed: int = 0,
    scenario: str | None = None,
    season_start: dt.date | None = None,
) -> SimulationResult:
    """Write ``days`` daily partitions (and their late labels) for model ``cfg``.

    ``out_dir`` is the data root: files go to ``out_dir/<data.path>`` and
    ``out_dir/<data.labels_path>`` (for a sql source: ``out_dir/<name>``, to load into tables). ``drift_day`` is 1-based: day 1 is ``start``.
    ``season_start``: the day of the year whose weather the first day has (``demand``; default
    ``start``), so that a calendar moved elsewhere in the year keeps the same data.
    """
    if drift_kind not in DRIFT_KINDS:
        raise ConfigError(f"drift kind {drift_kind!r} is not one of {DRIFT_KINDS}")
    if days < 1:
        raise ConfigError(f"days must be at least 1, got {days}")
    scenario = pick_scenario(cfg, scenario)
    src = cfg.data
    feat_dir = resolve_dir(out_dir, src.path or cfg.name)
    label_dir = resolve_dir(out_dir, src.labels_path) if src.labels_path else None
    rng = np.random.default_rng(seed)
    pending_labels: dict[dt.date, list[pd.DataFrame]] = {}
    drift_start = start + dt.timedelta(days=drift_day - 1) if drift_day and drift_kind != "none" else None
    rows = 0
    for i in range(days):
        day = start + dt.timedelta(days=i)
        drifted = drift_start is not None and day >= drift_start
        n = int(rng.poisson(rows_per_day))
        if scenario == "credit":
            frame, target = _credit_day(rng, n, drifted, drift_kind)
        else:
            season_day = season_start + dt.timedelta(days=i) if season_start else None
            frame, target = _demand_day(rng, n, drifted, drift_kind, day, season_day)
        ids = [f"{day:%Y%m%d}-{j:05d}" for j in range(n)]
        seconds = np.sort(rng.integers(0, 86_400, n))
        frame.insert(0, src.timestamp_column, pd.Timestamp(day) + pd.to_timedelta(seconds, unit="s"))
        frame.insert(0, src.id_column, ids)
        frame = frame[[src.id_column, src.timestamp_column, *cfg.features.all]]
        labels = pd.DataFrame({src.id_column: ids, cfg.features.target: target})
        if label_dir is None:
            frame[cfg.features.target] = target
        else:
            arrival = day + dt.timedelta(days=src.label_delay_days)
            pending_labels.setdefault(arrival, []).append(labels)
        write_partition(frame, partition_path(feat_dir, day, src.format), src.format)
        rows += n
    label_files = 0
    if label_dir is not None:
        for arrival, parts in sorted(pending_labels.items()):
            write_partition(
                pd.concat(parts, ignore_index=True), partition_path(label_dir, arrival, src.format), src.format
            )
            label_files += 1
    return SimulationResult(Path(out_dir), days, rows, start, drift_start, days, label_files)


WEAK_PARAMS = {"max_iter": 1, "max_depth": 1}


def register_weak_version(
    model: str,
    settings,
    as_of: str,
    *,
    run_key: str = "weak",
    params: dict | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """A deliberately weak version of ``model``, for demos and tests of rollout and rollback.

    Trained like any candidate (``snapshot_data`` and ``train_candidate`` on the
    window ending ``as_of``) from the model's config with ``training.params`` replaced by
    ``params`` (default: one stump), registered with ``tags`` and not promoted. The platform's
    stores are those of ``settings``; only the config is a temporary copy. Returns the version."""
    import dataclasses
    import shutil
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        cfg_dir = Path(tmp) / "configs"
        shutil.copytree(settings.config_dir, cfg_dir)
        path = cfg_dir / "models" / f"{model}.yaml"
        raw = yaml.safe_load(path.read_text())
        raw["training"]["params"] = dict(WEAK_PARAMS if params is None else params)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        weak = dataclasses.replace(settings, config_dir=cfg_dir)
        snap = snapshot_data(model, as_of, settings=weak, actor=run_key)
        trained = train_candidate(model, snap, settings=weak, run_key=run_key, actor=run_key)
    client = registry.get_client(settings.tracking_uri)
    return str(
        registry.register_version(
            client, model, run_id=trained.run_id, source=trained.model_uri, tags=tags or {}
        ).version
    )
