"""Starting an Airflow run from outside Airflow, through its REST API (Airflow 3: a JWT from
``POST /auth/token``, then ``POST /api/v2/dags/{dag_id}/dagRuns``). ``retrain promote`` uses
it to start the post-deploy guard of a version promoted by hand.

Configured by the environment: ``RETRAIN_AIRFLOW_API_URL`` (the api-server, e.g.
``http://localhost:8080``) and either ``RETRAIN_AIRFLOW_TOKEN`` (a JWT) or
``RETRAIN_AIRFLOW_USERNAME`` / ``RETRAIN_AIRFLOW_PASSWORD``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.errors import RetrainError

API_URL_ENV = "RETRAIN_AIRFLOW_API_URL"
TOKEN_ENV = "RETRAIN_AIRFLOW_TOKEN"
USERNAME_ENV = "RETRAIN_AIRFLOW_USERNAME"
PASSWORD_ENV = "RETRAIN_AIRFLOW_PASSWORD"


class AirflowApiError(RetrainError):
    """The api-server could not be reached or refused the call; the message says which and why."""


@dataclass(frozen=True)
class AirflowApi:
    """An Airflow api-server at ``base_url`` with a ``token`` or ``username``/``password``."""

    base_url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env=None) -> AirflowApi | None:
        """From the environment; ``None`` when ``RETRAIN_AIRFLOW_API_URL`` is not set."""
        env = os.environ if env is None else env
        url = (env.get(API_URL_ENV) or "").strip().rstrip("/")
        if not url:
            return None
        return cls(
            url,
            token=(env.get(TOKEN_ENV) or "").strip() or None,
            username=(env.get(USERNAME_ENV) or "").strip() or None,
            password=env.get(PASSWORD_ENV) or None,
        )

    def _bearer(self, client) -> str:
        if self.token:
            return self.token
        if not (self.username and self.password):
            raise AirflowApiError(
                f"{API_URL_ENV} is set but neither {TOKEN_ENV} nor {USERNAME_ENV}/{PASSWORD_ENV}: set one to let "
                "retrain start Airflow runs"
            )
        r = client.post(f"{self.base_url}/auth/token", json={"username": self.username, "password": self.password})
        if r.status_code not in (200, 201):
            raise AirflowApiError(
                f"{self.base_url}/auth/token refused {self.username!r}: HTTP {r.status_code} {r.text[:200]}"
            )
        return r.json()["access_token"]

    def trigger(self, dag_id: str, conf: dict[str, Any], *, run_id: str | None = None) -> dict[str, Any]:
        """Start a run of ``dag_id`` with ``conf`` (no logical date); returns the api-server's
        answer (``dag_run_id``, ``state``, ...)."""
        import httpx

        try:
            with httpx.Client(timeout=self.timeout_s) as client:
                headers = {"Authorization": f"Bearer {self._bearer(client)}"}
                body: dict[str, Any] = {"logical_date": None, "conf": conf}
                if run_id:
                    body["dag_run_id"] = run_id
                r = client.post(f"{self.base_url}/api/v2/dags/{dag_id}/dagRuns", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise AirflowApiError(f"cannot reach the Airflow api-server {self.base_url}: {exc}") from exc
        if r.status_code != 200:
            raise AirflowApiError(f"starting {dag_id} was refused: HTTP {r.status_code} {r.text[:300]}")
        return r.json()
