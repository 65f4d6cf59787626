"""Where the fleet status points: MLflow UI pages of runs and versions, and report files
inside the reports directory (never a way out of it)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote


def mlflow_run_url(ui_url: str, run_id: str | None) -> str | None:
    """The MLflow UI page of a run (MLflow's experiment-independent ``#/runs/<id>`` route)."""
    return f"{ui_url.rstrip('/')}/#/runs/{quote(run_id)}" if run_id else None


def mlflow_version_url(ui_url: str, model: str, version: str | None) -> str | None:
    """The MLflow UI page of a registered model version."""
    return f"{ui_url.rstrip('/')}/#/models/{quote(model)}/versions/{quote(str(version))}" if version else None


def report_relpath(reports_dir: Path, path: str | None) -> str | None:
    """``path`` relative to ``reports_dir`` (POSIX), or ``None`` when it is missing, not a
    file, or outside the reports directory (never a way out of it)."""
    if not path:
        return None
    try:
        p = Path(path).resolve()
        rel = p.relative_to(Path(reports_dir).resolve())
    except (OSError, ValueError):
        return None
    return rel.as_posix() if p.is_file() else None


def resolve_report(reports_dir: Path, relpath: str) -> Path | None:
    """The file ``relpath`` names inside ``reports_dir``, or ``None`` when it is not a file
    there (``..``, absolute paths and symlinks out of the directory are refused)."""
    root = Path(reports_dir).resolve()
    if not relpath or "\x00" in relpath or Path(relpath).is_absolute():
        return None
    try:
        target = (root / relpath).resolve()
        target.relative_to(root)
    except (OSError, ValueError):
        return None
    return target if target.is_file() else None
