"""``retrain serve`` as a child process: started, waited for, stopped by its PID.

Used by ``make demo``, the benchmarks and the tests that need a real gateway beside them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """A gateway serving ``models`` on a free port of 127.0.0.1.

    ``args``: more ``retrain serve`` arguments; ``env``: its environment (default: this
    process's); ``log_path``: where its output goes (default: discarded, errors kept for the
    message when it fails to start)."""

    def __init__(
        self,
        models: list[str] | str,
        *,
        refresh_s: float = 1.0,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        port: int | None = None,
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        names = models if isinstance(models, str) else ",".join(models)
        self.cmd = [
            sys.executable,
            "-m",
            "retrain_lib.cli.serving_cmds",
            "serve",
            "--port",
            str(self.port),
            "--models",
            names,
            "--refresh-s",
            str(refresh_s),
            *(args or []),
        ]
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    def launch(self) -> GatewayProcess:
        """Start the process without waiting for it (see :meth:`start`)."""
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.PIPE,
        )
        return self

    def start(self, timeout_s: float = 180) -> GatewayProcess:
        """Start it and wait until ``/health`` answers 200 (every model has a champion)."""
        self.launch()
        try:
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def output(self) -> str:
        """The end of its output (its log file, or stderr once it exited)."""
        if self.log_path is not None:
            return self.log_path.read_text()[-3000:] if self.log_path.exists() else ""
        if self.proc is not None and self.proc.stderr is not None and self.proc.poll() is not None:
            return self.proc.stderr.read().decode(errors="replace")[-3000:]
        return ""

    def health(self) -> dict | None:
        import httpx

        try:
            r = httpx.get(f"{self.url}/health", timeout=2)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code in (200, 503) else None

    def wait_healthy(self, timeout_s: float = 180) -> dict:
        import httpx

        deadline = time.monotonic() + timeout_s
        assert self.proc is not None, "start() the gateway first"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.proc.returncode}: {self.output()}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=2)
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not become healthy within {timeout_s:g} s: {self.output()}")
            time.sleep(0.3)

    def wait_serving(self, model: str, version: str, timeout_s: float = 60) -> float:
        """Seconds until the gateway's champion of ``model`` is ``version``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            h = self.health()
            if h and (h.get("models", {}).get(model) or {}).get("champion") == str(version):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not serve {model} v{version} within {timeout_s:g} s")

    def stop(self) -> None:
        """SIGTERM (graceful: queued log writes are committed), SIGKILL after 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
