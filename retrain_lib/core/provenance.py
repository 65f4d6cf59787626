"""Where a trained model's code came from: the project's git commit and its lock-file hash,
recorded on every training run (tags ``git.commit`` and ``lock.hash``, compared by
``retrain reproduce``).

Two sources, in this order:

1. the build info baked into an installed package, ``retrain_lib/_build_info.json``
   (:data:`BUILD_INFO_PATH`). The image has neither ``.git`` (``.dockerignore``) nor the
   project's ``uv.lock`` next to the installed package, so the Dockerfile writes this file
   before ``pip install .`` with ``python -m retrain_lib.cli.build_info --git-commit
   "$GIT_COMMIT" --lock uv.lock`` (:func:`write_build_info`);
2. otherwise the project checkout the package runs from (``uv sync``'s editable install): its
   git ``HEAD`` and its ``uv.lock``.

Both compute the lock hash with :func:`hash_lock_file`, so an image and a checkout of the same
commit record the same ``lock.hash``. A value that could not be known starts with ``unknown``
and says why (:func:`is_unknown`), e.g. :data:`NO_COMMIT_IN_IMAGE` for an image built without
``--build-arg GIT_COMMIT=...``.

This module imports only the standard library: the Dockerfile runs it before the package is
installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

#: The baked build info of an installed package (absent in a checkout).
BUILD_INFO_PATH = Path(__file__).resolve().parents[1] / "_build_info.json"
#: The project checkout an editable install runs from (site-packages for an installed package).
CHECKOUT = Path(__file__).resolve().parents[2]
UNKNOWN = "unknown"
NO_COMMIT_IN_IMAGE = "unknown (image built without GIT_COMMIT)"
NOT_A_CHECKOUT = "unknown (installed without build info)"
_COMMIT_RE = re.compile(r"[0-9a-f]{7,64}(-dirty)?")


def is_unknown(value: str | None) -> bool:
    """Whether a ``git.commit`` or ``lock.hash`` value records that the code was not known."""
    return not value or value.startswith(UNKNOWN)


def hash_lock_file(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of the file's bytes (the ``lock.hash`` tag)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def build_info() -> dict[str, str] | None:
    """The build info baked into the installed package (``{"git_commit", "lock_hash"}``), or
    ``None`` without one (running from a checkout). An unreadable file is logged and counts as
    a build whose commit and lock are unknown."""
    try:
        raw = json.loads(BUILD_INFO_PATH.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("unreadable build info %s: %s", BUILD_INFO_PATH, exc)
        raw = {}
    if not isinstance(raw, dict):
        raw = {}
    reason = f"unknown (unreadable build info {BUILD_INFO_PATH.name})"
    return {key: str(raw.get(key) or reason) for key in ("git_commit", "lock_hash")}


def git_commit() -> str:
    """The commit the code was built from (baked build info), else the checkout's ``HEAD``
    (``-dirty`` with uncommitted changes), else a value starting with ``unknown``."""
    info = build_info()
    if info is not None:
        return info["git_commit"]
    if not (CHECKOUT / "pyproject.toml").is_file():
        return NOT_A_CHECKOUT
    return checkout_commit(CHECKOUT)


def lock_hash() -> str:
    """The hash of the ``uv.lock`` the code was built with (baked build info), else of the
    checkout's ``uv.lock``, else ``unknown``."""
    info = build_info()
    if info is not None:
        return info["lock_hash"]
    lock = CHECKOUT / "uv.lock"
    return hash_lock_file(lock) if lock.is_file() else UNKNOWN


def code_tags() -> dict[str, str]:
    """The ``git.commit`` and ``lock.hash`` tags of a training run. Logs a warning when either
    is unknown: such a model can still be trained, but not traced back to its code."""
    tags = {"git.commit": git_commit(), "lock.hash": lock_hash()}
    unknown = {k: v for k, v in tags.items() if is_unknown(v)}
    if unknown:
        log.warning(
            "training without full code lineage (%s): build the image with "
            "--build-arg GIT_COMMIT=$(git rev-parse HEAD), or run from the project's git checkout",
            ", ".join(f"{k}={v!r}" for k, v in unknown.items()),
        )
    return tags


def checkout_commit(root: Path) -> str:
    """``HEAD`` of the git checkout at ``root`` (``-dirty`` with uncommitted changes to tracked
    files), or ``unknown`` (no git, not a repository)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        sha = out.stdout.strip()
        if not sha:
            return UNKNOWN
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN


def write_build_info(*, git_commit: str, lock_file: Path, target: Path | None = None) -> dict[str, str]:
    """Bake the build's commit and lock hash into the package about to be installed.

    Args:
        git_commit: the commit the build context was taken from (``git rev-parse HEAD``,
            optionally with ``-dirty``); empty records :data:`NO_COMMIT_IN_IMAGE`.
        lock_file: the ``uv.lock`` the build installed from (hashed with :func:`hash_lock_file`).
        target: where to write (default :data:`BUILD_INFO_PATH`: the package this module was
            imported from, i.e. the build context's ``retrain_lib/`` before ``pip install .``).

    Returns:
        What was written: ``{"git_commit", "lock_hash"}``.

    Raises:
        ValueError: a commit that is not a hex object name, a missing lock file, or a target
            inside a git checkout (there the working tree records the commit; a baked file
            would go stale with the next commit).
    """
    commit = (git_commit or "").strip()
    if commit and not _COMMIT_RE.fullmatch(commit):
        raise ValueError(
            "The 'git_commit' parameter of write_build_info must be a commit id such as the output of "
            f"'git rev-parse HEAD' (optionally with '-dirty'). Got {git_commit!r} instead."
        )
    lock_file = Path(lock_file)
    if not lock_file.is_file():
        raise ValueError(f"no lock file {lock_file}: pass the uv.lock the build installed from (--lock)")
    target = Path(target) if target is not None else BUILD_INFO_PATH
    package_root = target.resolve().parent.parent
    if (package_root / ".git").exists():
        raise ValueError(
            f"{package_root} is a git checkout: its working tree records the commit; write the build info "
            "in the build context of an install (the Dockerfile's /opt/retrain), not here"
        )
    info = {"git_commit": commit or NO_COMMIT_IN_IMAGE, "lock_hash": hash_lock_file(lock_file)}
    target.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info
