"""A command run in a process group of its own, killed with everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def run_in_own_group(cmd: list[str], *, timeout: float, cwd: Path) -> subprocess.CompletedProcess:
    """``cmd`` in a session of its own, its output captured. Whatever it started and left
    behind (the demo starts a gateway process) is killed with it, also when it times out, so
    no process outlives the test session."""
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(cmd, timeout, out, err) from None
        finally:
            _kill_group(proc.pid)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
