"""Drift scenarios with a known truth, for the adaptation benchmark and its tests.

Each scenario is a daily stream of credit applications (classification, the features of
``configs/models/credit_default.yaml``) or of store-day demand (regression, the features of
``daily_demand.yaml``), written in the layout :func:`~retrain_lib.store.data.load_window` reads:
one feature partition per day and the labels of the events of day *d* in the label partition
of day *d + label_delay_days*. Every scenario records its true change days.

Scenarios (``day`` is 1-based; ``change`` defaults to day 40 of 90):

* ``stable``: nothing changes;
* ``covariate``: from ``change`` the inputs shift (poorer applicants, higher utilisation and
  late payments, another region and employment mix; or warmer days, slightly higher prices,
  more discounts and promotions, a few more large stores) while the relation between inputs and target stays the same,
  inside the support of the training data, so a model trained before stays accurate;
* ``abrupt_concept``: from ``change`` the same inputs map to another target (concept B:
  utilisation stops mattering, young borrowers with large loans become the risky ones; or
  a lower price elasticity, promotions stop working, small stores sell more);
* ``gradual_concept``: the share of events drawn from concept B rises linearly over
  ``ramp_days`` (10) days from ``change``;
* ``recurring_concept``: concept B from ``change`` to ``change + 24``, then concept A again
  (two changes);
* ``prior_shift``: a label-distribution shift: from ``change`` the events are resampled by
  their target (defaulters, or days above the day's median demand, kept, the others kept
  with probability 0.4), so P(inputs | target) is unchanged and P(target) moves.

Every day has exactly ``rows_per_day`` events. All scenarios of one task, size and seed
draw the same random numbers, so their days before the change are identical.

The model config is the shipped example config of the task adapted by :func:`config_dict`
(the one place to edit what the benchmark runs), so a change of the shipped defaults is
picked up.

Example::

    from retrain_lib.tools.scenarios import shipped_config, write_scenario

    data = write_scenario("abrupt_concept", "classification", Path("/tmp/s"), rows_per_day=300,
                          base=shipped_config("classification", Path("configs")))
    data.change_dates  # (datetime.date(2026, 2, 9),)
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retrain_lib.core.config import ModelConfig, load_model_config
from retrain_lib.core.errors import ConfigError
from retrain_lib.store.data import partition_path, resolve_dir, write_partition

SCENARIOS = ("stable", "covariate", "abrupt_concept", "gradual_concept", "recurring_concept", "prior_shift")
KINDS = {
    "stable": "stable",
    "covariate": "covariate",
    "abrupt_concept": "concept",
    "gradual_concept": "concept",
    "recurring_concept": "concept",
    "prior_shift": "prior",
}
TASKS = ("classification", "regression")
SHIPPED = {"classification": "credit_default", "regression": "daily_demand"}
MODEL_NAMES = {"classification": "bench_credit", "regression": "bench_demand"}
RAMP_DAYS = 10
RECUR_DAYS = 25
PRIOR_KEEP = 0.4


@dataclass(frozen=True)
class DayState:
    """How one day is drawn: ``covariate`` (shifted inputs), ``concept_b`` (share of events
    drawn from concept B), ``prior`` (events resampled by their target)."""

    covariate: bool = False
    concept_b: float = 0.0
    prior: bool = False


@dataclass(frozen=True)
class Scenario:
    """A scenario's truth: ``changes`` are ``(first day, last day)`` of each change, 1-based
    (the same day for an abrupt change, the end of the ramp for a gradual one)."""

    name: str
    kind: str
    days: int
    changes: tuple[tuple[int, int], ...]
    change: int

    def state(self, day: int) -> DayState:
        """The drawing of 1-based day ``day``."""
        c = self.change
        after = day >= c
        if self.name == "covariate":
            return DayState(covariate=after)
        if self.name == "abrupt_concept":
            return DayState(concept_b=1.0 if after else 0.0)
        if self.name == "gradual_concept":
            return DayState(concept_b=float(np.clip((day - c + 1) / RAMP_DAYS, 0.0, 1.0)))
        if self.name == "recurring_concept":
            return DayState(concept_b=1.0 if c <= day < c + RECUR_DAYS else 0.0)
        if self.name == "prior_shift":
            return DayState(prior=after)
        return DayState()


def scenario(name: str, *, days: int = 90, change: int = 40) -> Scenario:
    """The scenario ``name`` over ``days`` days with its (first) change on day ``change``."""
    if name not in SCENARIOS:
        raise ConfigError(
            f"The 'name' parameter of scenario must be one of {', '.join(SCENARIOS)}. Got {name!r} instead."
        )
    if not 1 < change <= days:
        raise ConfigError(f"change day {change} must be in 2..{days}")
    changes: tuple[tuple[int, int], ...] = ()
    if name == "gradual_concept":
        changes = ((change, min(change + RAMP_DAYS - 1, days)),)
    elif name == "recurring_concept":
        back = change + RECUR_DAYS
        changes = ((change, change),) + (((back, back),) if back <= days else ())
    elif name != "stable":
        changes = ((change, change),)
    return Scenario(name, KINDS[name], days, changes, change)


# -----------------------------------------------------------------------------------------
# One day of events
# -----------------------------------------------------------------------------------------


def _credit_inputs(rng: np.random.Generator, n: int, shifted: bool) -> pd.DataFrame:
    regions = np.array(["north", "south", "east", "west"])
    region = rng.choice(regions, n, p=[0.15, 0.25, 0.2, 0.4] if shifted else [0.3, 0.25, 0.25, 0.2])
    employment = rng.choice(
        ["salaried", "self_employed", "unemployed", "retired"],
        n,
        p=[0.55, 0.2, 0.15, 0.1] if shifted else [0.65, 0.2, 0.05, 0.1],
    )
    region_income = pd.Series(region).map({"north": 0.1, "south": -0.1, "east": 0.0, "west": 0.05}).to_numpy()
    income = np.exp(rng.normal(np.log(52_000) + region_income - (0.3 if shifted else 0.0), 0.45, n)).round(0)
    income[rng.random(n) < 0.01] = np.nan  # a few missing incomes, as in real application data
    return pd.DataFrame(
        {
            "income": income,
            "debt_to_income": (rng.beta(2, 5, n) * (1.0 if shifted else 0.8)).round(4),
            "credit_utilization": (rng.beta(3.5, 2, n) if shifted else rng.beta(2, 3, n)).round(4),
            "age": np.clip(rng.normal(42, 12, n), 18, 85).round(0),
            "num_late_payments": rng.poisson(1.0 if shifted else 0.5, n).astype(float),
            "loan_amount": np.exp(rng.normal(np.log(15_000), 0.6, n)).round(0),
            "region": region,
            "employment_type": employment,
        }
    )


def _credit_logits(x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds of default under concept A and concept B (simulate.py's two concepts)."""
    util, dti, late = (
        x["credit_utilization"].to_numpy(),
        x["debt_to_income"].to_numpy(),
        x["num_late_payments"].to_numpy(),
    )
    log_income = np.log(x["income"].fillna(52_000).to_numpy()) - 10.85
    age, loan = x["age"].to_numpy() - 42, np.log(x["loan_amount"].to_numpy() / 15_000)
    unemployed = (x["employment_type"] == "unemployed").to_numpy().astype(float)
    a = (
        -1.6
        + 3.2 * (util - 0.4)
        + 9.6 * (dti - 0.23)
        + 0.55 * late
        - 1.1 * log_income
        - 0.012 * age
        + 0.25 * loan
        + 0.9 * unemployed
    )
    b = (
        -1.3
        + 0.2 * (util - 0.4)
        + 4.0 * (dti - 0.23)
        + 0.1 * late
        - 0.2 * log_income
        - 0.06 * age
        + 1.2 * loan
        + 0.2 * unemployed
    )
    return a, b


def _demand_inputs(rng: np.random.Generator, n: int, shifted: bool, day: dt.date) -> pd.DataFrame:
    # The shifted inputs stay inside the support of the unshifted ones (no extrapolation).
    store_type = rng.choice(["small", "medium", "large"], n, p=[0.45, 0.35, 0.2] if shifted else [0.5, 0.35, 0.15])
    base_size = pd.Series(store_type).map({"small": 300.0, "medium": 800.0, "large": 2000.0}).to_numpy()
    season = 12 + 8 * np.sin(2 * np.pi * (day.timetuple().tm_yday - 110) / 365)
    return pd.DataFrame(
        {
            "temperature": rng.normal(season + (4 if shifted else 0), 4, n).round(1),
            "price": rng.normal(10.5 if shifted else 10.0, 1.5, n).clip(2, None).round(2),
            "discount": rng.choice(
                [0, 0.1, 0.2, 0.3], n, p=[0.6, 0.2, 0.15, 0.05] if shifted else [0.7, 0.15, 0.1, 0.05]
            ),
            "day_of_week": np.full(n, float(day.weekday())),
            "store_size": (base_size * rng.lognormal(0, 0.15, n)).round(0),
            "store_type": store_type,
            "promo": rng.choice(["yes", "no"], n, p=[0.3, 0.7] if shifted else [0.2, 0.8]),
        }
    )


def _demand_means(x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Expected units under concept A and concept B (simulate.py's two concepts)."""
    net_price = x["price"].to_numpy() * (1 - x["discount"].to_numpy()) - 10
    common = (
        np.log(x["store_size"].to_numpy() / 20)
        + 0.02 * (x["temperature"].to_numpy() - 15)
        + 0.25 * (x["day_of_week"].to_numpy() >= 5)
    )
    promo = (x["promo"] == "yes").to_numpy()
    small = (x["store_type"] == "small").to_numpy()
    a = common - 0.12 * net_price + 0.3 * promo
    b = common - 0.03 * net_price + 0.05 * promo + 0.6 * small
    return np.exp(a), np.exp(b)


def _draw(
    task: str, rng: np.random.Generator, n: int, state: DayState, day: dt.date
) -> tuple[pd.DataFrame, np.ndarray]:
    if task == "classification":
        x = _credit_inputs(rng, n, state.covariate)
        a, b = _credit_logits(x)
        use_b = rng.random(n) < state.concept_b
        logit = np.where(use_b, b, a)
        return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    x = _demand_inputs(rng, n, state.covariate, day)
    a, b = _demand_means(x)
    use_b = rng.random(n) < state.concept_b
    return x, rng.poisson(np.where(use_b, b, a)).astype(float)


def generate_day(
    task: str, rng: np.random.Generator, n: int, state: DayState, day: dt.date
) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` events of ``day`` drawn as ``state`` says: the feature frame and the targets."""
    if task not in TASKS:
        raise ConfigError(
            f"The 'task' parameter of generate_day must be one of {', '.join(TASKS)}. Got {task!r} instead."
        )
    if not state.prior:
        return _draw(task, rng, n, state, day)
    # Label shift: draw batches of the unshifted stream and keep an event with probability 1
    # when its target is "high" (a default; demand at least the batch's median), else
    # PRIOR_KEEP. P(x | y) is untouched, P(y) moves.
    frames, targets, kept = [], [], 0
    while kept < n:
        x, y = _draw(task, rng, max(2 * n, 200), dataclasses.replace(state, prior=False), day)
        high = y >= 1 if task == "classification" else y >= np.median(y)
        keep = high | (rng.random(len(y)) < PRIOR_KEEP)
        frames.append(x[keep])
        targets.append(y[keep])
        kept += int(keep.sum())
    return (pd.concat(frames, ignore_index=True).iloc[:n].reset_index(drop=True), np.concatenate(targets)[:n])


# -----------------------------------------------------------------------------------------
# The model config and the files
# -----------------------------------------------------------------------------------------


def shipped_config(task: str, config_dir: Path) -> dict:
    """The shipped example config of ``task`` (``<config_dir>/models/<name>.yaml``) as a dict."""
    import yaml

    if task not in TASKS:
        raise ConfigError(
            f"The 'task' parameter of shipped_config must be one of {', '.join(TASKS)}. Got {task!r} instead."
        )
    path = Path(config_dir) / "models" / f"{SHIPPED[task]}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; pass the directory holding models/{SHIPPED[task]}.yaml")
    return yaml.safe_load(path.read_text())


def config_dict(task: str, base: dict, *, label_delay_days: int = 3, training_days: int = 14) -> dict:
    """The benchmark's model config: ``base`` (the shipped config of ``task`` as a dict) with
    the scenario's data and a faster fit. Everything else (drift, performance trigger,
    schedule floor, gates, rollback, validation) is the shipped setting, so editing the
    shipped YAML changes what the benchmark measures; edit here what must differ.

    * name ``bench_credit`` / ``bench_demand``, data ``<name>/`` and ``<name>/labels/`` as
      parquet, labels ``label_delay_days`` late, ``windows.training_days`` = ``training_days``;
    * classification: ``max_iter`` at most 60 (speed); regression: ``n_estimators`` at
      most 25 (speed);
    * no ``latency`` gate (it measures the machine, not adaptation) and ``validation``
      disabled (generated data are valid by construction; it costs seconds per window);
    * no ``alerts`` (a replay sends none).
    """
    raw = copy.deepcopy(base)
    name = MODEL_NAMES[task]
    raw["name"] = name
    raw["description"] = f"adaptation benchmark model derived from {SHIPPED[task]}.yaml"
    raw["data"] = {
        **raw["data"],
        "path": name,
        "labels_path": f"{name}/labels",
        "format": "parquet",
        "label_delay_days": label_delay_days,
    }
    raw["data"].pop("source", None)
    raw["windows"] = {**raw["windows"], "training_days": training_days}
    params = dict(raw["training"].get("params") or {})
    if task == "classification":
        params["max_iter"] = min(int(params.get("max_iter", 60)), 60)
    else:
        params["n_estimators"] = min(int(params.get("n_estimators", 25)), 25)
    raw["training"] = {**raw["training"], "params": params}
    # A wall-clock gate measures the machine, not adaptation (and 100 single-row predictions
    # per trained model cost more than the fit here).
    raw["gates"] = [g for g in raw.get("gates") or [] if g.get("type") != "latency"]
    # The generated data are valid by construction: the retrain's data validation (Great
    # Expectations, seconds per window) could only pass.
    if raw.get("validation"):
        raw["validation"] = {**raw["validation"], "enabled": False}
    raw.pop("alerts", None)
    return raw


@dataclass(frozen=True)
class ScenarioData:
    """What :func:`write_scenario` wrote: the data root, the config (and its YAML file), the
    truth (``changes`` as dates: first and last day of each change) and, per event day, the
    population variance of the targets (to turn a daily RMSE into R2)."""

    scenario: Scenario
    task: str
    rows_per_day: int
    data_root: Path
    config_path: Path
    config: ModelConfig
    start: dt.date
    changes: tuple[tuple[dt.date, dt.date], ...]
    label_delay_days: int
    target_variance: dict[str, float]

    @property
    def change_dates(self) -> tuple[dt.date, ...]:
        return tuple(first for first, _ in self.changes)


def seed_for(task: str, rows_per_day: int, seed: int = 0) -> list[int]:
    """The random stream of a task and size: the same for every scenario (common random numbers)."""
    return [seed, zlib.crc32(task.encode()), rows_per_day]


def write_scenario(
    name: str,
    task: str,
    out_dir: Path,
    *,
    rows_per_day: int,
    base: dict,
    days: int = 90,
    change: int = 40,
    label_delay_days: int = 3,
    training_days: int = 14,
    start: dt.date = dt.date(2026, 1, 1),
    seed: int = 0,
) -> ScenarioData:
    """Write scenario ``name`` of ``task`` under ``out_dir`` (the data root): the daily
    partitions, the label partitions and ``configs/models/<model>.yaml`` (from
    :func:`config_dict` on ``base``)."""
    import yaml

    if rows_per_day < 10:
        raise ConfigError(f"rows_per_day must be at least 10, got {rows_per_day}")
    sc = scenario(name, days=days, change=change)
    out_dir = Path(out_dir)
    config_path = out_dir / "configs" / "models" / f"{MODEL_NAMES[task]}.yaml"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        yaml.safe_dump(
            config_dict(task, base, label_delay_days=label_delay_days, training_days=training_days), sort_keys=False
        )
    )
    cfg = load_model_config(config_path)
    src = cfg.data
    assert src.path is not None and src.labels_path is not None  # config_dict sets both
    feat_dir = resolve_dir(out_dir, src.path)
    label_dir = resolve_dir(out_dir, src.labels_path)
    rng = np.random.default_rng(seed_for(task, rows_per_day, seed))
    variance: dict[str, float] = {}
    for i in range(days):
        day = start + dt.timedelta(days=i)
        frame, target = generate_day(task, rng, rows_per_day, sc.state(i + 1), day)
        ids = [f"{day:%Y%m%d}-{j:05d}" for j in range(rows_per_day)]
        seconds = np.sort(rng.integers(0, 86_400, rows_per_day))
        frame.insert(0, src.timestamp_column, pd.Timestamp(day) + pd.to_timedelta(seconds, unit="s"))
        frame.insert(0, src.id_column, ids)
        write_partition(
            frame[[src.id_column, src.timestamp_column, *cfg.features.all]],
            partition_path(feat_dir, day, src.format),
            src.format,
        )
        labels = pd.DataFrame({src.id_column: ids, cfg.features.target: target})
        arrival = day + dt.timedelta(days=label_delay_days)
        write_partition(labels, partition_path(label_dir, arrival, src.format), src.format)
        variance[day.isoformat()] = float(np.var(target))
    changes = tuple((start + dt.timedelta(days=a - 1), start + dt.timedelta(days=b - 1)) for a, b in sc.changes)
    return ScenarioData(sc, task, rows_per_day, out_dir, config_path, cfg, start, changes, label_delay_days, variance)
