"""Lineage in the image: the package installed the way the Dockerfile installs it (from a build
context without ``.git``, non-editable, after the Dockerfile's own build-info step) reads the
real commit and ``uv.lock`` hash as its current code (what ``retrain reproduce`` compares with)
and records them on a version it trains.

The build context and the install step are read from the Dockerfile itself: the ``COPY`` lines
before the step, and the ``RUN`` line that calls ``retrain_lib.cli.build_info``, run with bash
and ``GIT_COMMIT`` in its environment as ``docker build --build-arg`` would set it. The fresh
venv reaches the locked dependencies through a ``.pth`` file naming the project venv's
site-packages, written after the install (so pip never sees the project's editable install);
everything runs from a folder outside any git repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from platforms import pin_fixed_policy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
AS_OF = "2026-01-29"


def dockerfile_install(dockerfile: Path) -> tuple[list[tuple[list[str], str]], str]:
    """``(copies, step)``: the Dockerfile's ``COPY`` instructions from the build context up to
    the ``RUN`` that bakes the build info (``(sources, destination)`` each), and that ``RUN``'s
    shell command."""
    instructions, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            instructions.append(current.strip())
            current = ""
    copies = []
    for instruction in instructions:
        keyword, _, rest = instruction.partition(" ")
        if keyword == "COPY":
            args = [a for a in shlex.split(rest) if not a.startswith("--chown")]
            if any(a.startswith("--from") for a in args):
                continue  # from another image, not the build context
            copies.append((args[:-1], args[-1]))
        elif keyword == "RUN" and "retrain_lib.cli.build_info" in rest:
            return copies, rest
    raise AssertionError(f"{dockerfile} has no RUN step calling retrain_lib.cli.build_info")


def build_context(copies, dest: Path) -> None:
    """What those ``COPY`` lines put in the image's WORKDIR (``.dockerignore``'s ``__pycache__``
    left out; ``.git`` is never copied)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for sources, target in copies:
        for source in sources:
            src = REPO / source
            to = dest / target / src.name if target.endswith("/") else dest / target
            to.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, to, ignore=ignore)
            else:
                shutil.copy2(src, to)


def git_head() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"the tests need the project's git checkout: {proc.stderr}"
    return proc.stdout.strip()


def clean_env(venv: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1", **extra)
    return env


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """The package installed as the Dockerfile installs it, into a fresh venv."""
    tmp = tmp_path_factory.mktemp("image")
    head = git_head()
    copies, step = dockerfile_install(REPO / "Dockerfile")
    context = tmp / "opt-retrain"
    build_context(copies, context)
    assert (context / "retrain_lib").is_dir() and (context / "uv.lock").is_file()
    assert not (context / ".git").exists()

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", step],
        cwd=context,
        env=clean_env(venv, GIT_COMMIT=head),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    site = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # the locked dependencies, from the project venv (after the install: pip saw a bare venv)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_locked_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(deps)))

    outside = tmp / "work"  # no git repository here, nor above it
    outside.mkdir()
    shutil.copytree(REPO / "configs", outside / "configs")
    pin_fixed_policy(outside / "configs")
    raw = yaml.safe_load((outside / "configs" / "models" / f"{MODEL}.yaml").read_text())
    # the cheapest full retrain: no fresh gateway process for the serving gates
    raw["gates"] = [g for g in raw["gates"] if g.get("type") not in ("servable", "latency")]
    (outside / "configs" / "models" / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    not_git = subprocess.run(["git", "-C", str(outside), "rev-parse", "HEAD"], capture_output=True, check=False)
    assert not_git.returncode != 0, f"{outside} is inside a git repository"
    env = clean_env(venv, RETRAIN_HOME=str(outside / "state"), RETRAIN_CONFIG_DIR=str(outside / "configs"))
    return {"venv": venv, "site": site, "outside": outside, "env": env, "head": head}


def retrain_cli(image, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed ``retrain`` command, run outside any git repository."""
    return subprocess.run(
        [str(image["venv"] / "bin" / "retrain"), *args],
        cwd=image["outside"],
        env=image["env"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def expected_lock_hash() -> str:
    """``lock.hash`` as the README defines it: the first 16 hex digits of uv.lock's SHA-256."""
    return hashlib.sha256((REPO / "uv.lock").read_bytes()).hexdigest()[:16]


def test_the_installed_package_is_the_copy_with_the_build_info_baked_in(image):
    probe = (
        "import json, retrain_lib; from retrain_lib.core import provenance as p; "
        "print(json.dumps([retrain_lib.__file__, p.git_commit(), p.lock_hash()]))"
    )
    proc = subprocess.run(
        [str(image["venv"] / "bin" / "python"), "-c", probe],
        cwd=image["outside"],
        env=image["env"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    where, commit, lock = json.loads(proc.stdout)
    assert Path(where).is_relative_to(image["site"]), where  # not the checkout's editable install
    assert (commit, lock) == (image["head"], expected_lock_hash())
    baked = json.loads((image["site"] / "retrain_lib" / "_build_info.json").read_text())
    assert baked == {"git_commit": image["head"], "lock_hash": expected_lock_hash()}
    assert not (image["site"] / ".git").exists() and not (image["site"] / "uv.lock").exists()


def test_a_version_trained_in_the_install_records_the_real_commit_and_lock_hash(image):
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store import registry

    sim = retrain_cli(
        image, "simulate", "--config", f"configs/models/{MODEL}.yaml", "--days", "33", "--rows-per-day", "400"
    )
    assert sim.returncode == 0, sim.stderr[-3000:]
    proc = retrain_cli(image, "retrain", MODEL, "--as-of", AS_OF, "--format", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["outcome"] == "deployed" and out["registered"]["version"] == "1", out
    assert "training without full code lineage" not in proc.stderr

    with pytest.MonkeyPatch.context() as mp:
        for key in ("RETRAIN_HOME", "RETRAIN_CONFIG_DIR"):
            mp.setenv(key, image["env"][key])
        settings = load_settings(image["outside"] / "configs")
    client = registry.get_client(settings.tracking_uri, settings.registry_uri)
    version = client.get_model_version(MODEL, "1")
    run = client.get_run(out["trained"]["run_id"])
    assert version.run_id == run.info.run_id
    for tags in (run.data.tags, version.tags):
        assert tags["git.commit"] == image["head"]
        assert tags["lock.hash"] == expected_lock_hash()
