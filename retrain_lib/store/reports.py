"""Human-readable reports: an Evidently 0.7 data drift report (HTML) per monitor run.

The monitor's *decision* comes from :mod:`retrain_lib.stats.drift`; the HTML report is for the
people who look at it. It uses the same features (``drift.exclude`` left out), the same
method per feature and the same thresholds as the decision, mapped to Evidently's stattests
(``psi``, ``ks``, ``jensenshannon``, ``chisquare``, ``wasserstein``); a feature whose method
Evidently lacks is shown with Evidently's default test for its type. Evidently bins numeric
features its own way (PSI and Jensen-Shannon), so those scores can differ a little from the
platform's metrics logged next to the report.

Evidently takes about 12 s to import: it is imported inside :func:`drift_html_report` only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from retrain_lib.core.config import ModelConfig
from retrain_lib.stats.calibration import AUTO
from retrain_lib.stats.drift_methods import get_method

log = logging.getLogger(__name__)

# platform method -> Evidently stattest name
EVIDENTLY_METHODS = {"psi": "psi", "ks": "ks", "js": "jensenshannon", "chi2": "chisquare", "wasserstein": "wasserstein"}


def column_tests(cfg: ModelConfig, decided: dict[str, float] | None = None) -> dict[str, tuple[str, str, float]]:
    """``feature -> (kind, method, threshold)`` of every drift-checked feature, resolved the
    way :func:`retrain_lib.stats.drift.compute_drift` resolves them: a per-feature override, else
    the default method of the feature's kind; the config's ``threshold`` applies to the
    default method; otherwise the method's own default threshold.

    ``decided`` holds the thresholds the monitor's drift check used (``feature -> threshold``);
    they win, and they are required for a threshold ``auto``, which is calibrated to the day's
    sample sizes and so cannot be read from the config."""
    d = cfg.drift
    skip = set(d.exclude)
    out: dict[str, tuple[str, str, float]] = {}
    for kind, columns, default in (
        ("numeric", cfg.features.numeric, d.method),
        ("categorical", cfg.features.categorical, d.categorical_method),
    ):
        for col in columns:
            if col in skip:
                continue
            spec = d.features.get(col)
            method = spec.method if spec else None
            threshold = spec.threshold if spec else None
            chosen = method or default
            if threshold is None and method is None and (kind == "numeric" or default == d.method):
                threshold = d.threshold
            if decided and col in decided:
                threshold = decided[col]
            elif threshold == AUTO:
                raise ValueError(
                    f"model {cfg.name!r}: the drift threshold of feature {col!r} is 'auto' (calibrated "
                    "per check); pass the thresholds the drift check decided"
                )
            if threshold is None:
                threshold = get_method(chosen).default_threshold
            out[col] = (kind, chosen, float(threshold))
    return out


def decided_tests(features) -> dict[str, tuple[str, str, float]]:
    """``feature -> (kind, method, threshold)`` from the features of a drift check (its
    ``DriftReport.to_dict()["features"]``): the tests as the check ran them."""
    return {f["name"]: (f["kind"], f["method"], float(f["threshold"])) for f in features}


def drift_html_report(cfg: ModelConfig, reference: pd.DataFrame, current: pd.DataFrame, path, *, features=None) -> Path:
    """Write an Evidently ``DataDriftPreset`` report of ``current`` vs ``reference`` to ``path``
    (HTML) and return the path. The columns' tests are those of the drift check when its
    ``features`` (``DriftReport.to_dict()["features"]``) are given, else resolved from the
    config (:func:`column_tests`; a ``threshold: auto`` needs the check's features).

    Example::

        drift_html_report(cfg, reference_window.frame, current_window.frame, "drift_report.html")
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    tests = decided_tests(features) if features is not None else column_tests(cfg)
    if not tests:
        raise ValueError(f"model {cfg.name!r} has no drift-checked feature (all are in drift.exclude)")
    numeric = [c for c, (kind, _, _) in tests.items() if kind == "numeric"]
    categorical = [c for c, (kind, _, _) in tests.items() if kind == "categorical"]
    columns = [*numeric, *categorical]
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(f"the {name} data lacks feature(s) {missing} of model {cfg.name!r}")
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    preset = DataDriftPreset(
        columns=columns,
        drift_share=cfg.drift.drift_share,
        num_method=EVIDENTLY_METHODS.get(cfg.drift.method),
        cat_method=EVIDENTLY_METHODS.get(cfg.drift.categorical_method),
        per_column_method={c: EVIDENTLY_METHODS[m] for c, (_, m, _) in tests.items() if m in EVIDENTLY_METHODS},
        per_column_threshold={c: t for c, (_, m, t) in tests.items() if m in EVIDENTLY_METHODS},
    )
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition),
        Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    snapshot.save_html(str(tmp))
    tmp.replace(path)
    log.info("drift report of %s written to %s", cfg.name, path)
    return path


def link_to_artifact(path, artifact_uri: str, artifact_dir: str) -> bool:
    """Keep one copy of a report that was also logged to MLflow: when the run's artifacts are
    in a local directory, ``path`` becomes a hard link to the logged copy (same file, two
    names: the reports directory the fleet page serves, and MLflow's artifact). Returns whether
    it did; with a remote artifact store (S3, an MLflow server) or across file systems the
    local file stays as it is.

    Example::

        mlflow.log_artifact(str(html), artifact_path="monitor")
        link_to_artifact(html, run.info.artifact_uri, "monitor")
    """
    import os
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    parsed = urlparse(artifact_uri)
    if parsed.scheme not in ("", "file"):
        return False
    path = Path(path)
    stored = Path(url2pathname(parsed.path)) / artifact_dir / path.name
    tmp = path.with_name(path.name + ".link")
    try:
        if os.path.samefile(stored, path):
            return True
        if stored.stat().st_size != path.stat().st_size:
            log.warning("the logged copy %s differs from %s; both are kept", stored, path)
            return False
        tmp.unlink(missing_ok=True)
        os.link(stored, tmp)
        tmp.replace(path)
    except OSError as exc:
        log.info("report %s kept as a copy of %s: %s", path, stored, exc)
        tmp.unlink(missing_ok=True)
        return False
    return True
