"""Helpers of the reliability suite (imported by its tests): a platform in a temp dir,
environment overrides, and real services started and stopped by PID (an ``mlflow server``
subprocess, a private PostgreSQL cluster).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from fake_slack import FakeSlack
from platforms import pin_fixed_policy
from services import BIN, MlflowServer, free_port, stop  # noqa: F401 - re-exported to the suite

REPO = Path(__file__).resolve().parents[2]
# Fast models and metric-only gates: these tests are about what survives a fault, not model quality.
LIGHT_GATES = [{"metric": "roc_auc", "min": 0.6}, {"metric": "roc_auc", "max_regression": 0.05}]


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Set (``None``: unset) environment variables for a block, then put them back."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in values.items():
            if v is None:
                # setenv first records the value before, or that there was none: delenv alone
                # records nothing for an unset name, and a value set in the block would stay.
                mp.setenv(k, "")
                mp.delenv(k)
            else:
                mp.setenv(k, v)
        yield


def make_platform(
    root: Path,
    *,
    model: str = "credit_default",
    edit: Callable[[dict], None] | None = None,
    light: bool = True,
    days: int = 35,
    rows_per_day: int = 200,
    seed: int = 7,
):
    """A copy of ``configs/`` with only ``model`` (``light``: no data validation, metric gates
    and a small model; then edited by ``edit``), simulated data under
    ``root/state``, and the settings for it. The caller sets ``RETRAIN_HOME`` /
    ``RETRAIN_CONFIG_DIR`` (see :func:`platform_env`) before calling lifecycle steps."""
    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.simulate import simulate

    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    pin_fixed_policy(cfg_dir)  # these tests check the lifecycle's mechanics on the fixed policy
    for other in (cfg_dir / "models").glob("*.yaml"):
        if other.stem != model:
            other.unlink()
    path = cfg_dir / "models" / f"{model}.yaml"
    raw = yaml.safe_load(path.read_text())
    if light:
        raw.pop("validation", None)
        raw["gates"] = list(LIGHT_GATES)
        raw["training"]["params"] = {"max_iter": 40, "max_leaf_nodes": 15}
    if edit is not None:
        edit(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with platform_env(root, cfg_dir):
        settings = load_settings(cfg_dir)
        cfg = load_model_config(path)
        simulate(
            cfg, settings.data_root, days=days, drift_day=None, drift_kind="none", rows_per_day=rows_per_day, seed=seed
        )
    return settings, cfg_dir


def platform_env(root: Path, cfg_dir: Path, **more: str | None):
    values = {
        "RETRAIN_HOME": str(root / "state"),
        "RETRAIN_CONFIG_DIR": str(cfg_dir),
        "MLFLOW_TRACKING_URI": None,
        "MLFLOW_REGISTRY_URI": None,
        "RETRAIN_DB_URL": None,
    }
    return env(**{**values, **more})


def champion(settings, model: str = "credit_default") -> str | None:
    from retrain_lib.store import registry

    return registry.aliases(registry.get_client(settings.tracking_uri, settings.registry_uri), model).get("champion")


def versions(settings, model: str = "credit_default") -> list[str]:
    from retrain_lib.store import registry

    client = registry.get_client(settings.tracking_uri, settings.registry_uri)
    return sorted((str(v.version) for v in client.search_model_versions(f"name='{model}'")), key=int)


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PrivatePostgres:
    """A private PostgreSQL cluster (initdb in a temp dir, owned by the ``postgres`` OS user,
    on a free port) that a test may restart; never the shared server on 5432."""

    def __init__(self):
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="retrain-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()

    @staticmethod
    def available() -> str | None:
        """``None`` when a private cluster can be run here, else why not."""
        if _pg_bin() is None:
            return "no /usr/lib/postgresql/*/bin/pg_ctl"
        if os.geteuid() != 0 or shutil.which("su") is None:
            return "a private cluster needs root to run initdb/pg_ctl as the postgres OS user"
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "no postgres OS user"
        return None

    def _as_postgres(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        import shlex

        cmd = " ".join(shlex.quote(a) for a in args)
        return subprocess.run(["su", "postgres", "-c", cmd], capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        shutil.chown(self.dir, "postgres", "postgres")
        res = self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )
        assert res.returncode == 0, res.stderr[-2000:]

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        res = self._as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "pg.log"),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "start",
        )
        assert res.returncode == 0, res.stderr[-2000:] + (self.dir / "pg.log").read_text()[-2000:]

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, db: str = "postgres", password: str | None = None) -> str:
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def fake_slack():
    """The local Slack stand-in (a real HTTP server) of ``tests/fake_slack.py``."""
    return FakeSlack()
