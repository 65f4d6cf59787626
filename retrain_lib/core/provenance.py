"""Where a trained model's code came from: the project's git commit and its lock-file hash,
recorded on every training run (and compared by ``retrain reproduce``)."""

from __future__ import annotations

import hashlib
import subprocess

from retrain_lib.core.settings import PACKAGE_ROOT


def git_commit() -> str:
    """The project's ``HEAD`` commit (``-dirty`` with uncommitted changes), or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        sha = out.stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lock_hash() -> str:
    """The first 16 hex digits of ``uv.lock``'s SHA-256, or ``unknown`` without a lock file."""
    lock = PACKAGE_ROOT / "uv.lock"
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:16] if lock.exists() else "unknown"
