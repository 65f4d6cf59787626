"""Starting an Airflow run and pausing a DAG from outside Airflow, through its REST API (Airflow 3:
a JWT from ``POST /auth/token``, then ``POST /api/v2/dags/{dag_id}/dagRuns`` or ``PATCH
/api/v2/dags/{dag_id}``). ``retrain promote`` uses it to start the post-deploy guard of a version
promoted by hand, a retirement to pause the model's DAGs.

Configured by the environment: ``RETRAIN_AIRFLOW_API_URL`` (the api-server, e.g.
``http://localhost:8080``) and either ``RETRAIN_AIRFLOW_TOKEN`` (a JWT) or
``RETRAIN_AIRFLOW_USERNAME`` / ``RETRAIN_AIRFLOW_PASSWORD``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.errors import RetrainError

API_URL_ENV = "RETRAIN_AIRFLOW_API_URL"
TOKEN_ENV = "RETRAIN_AIRFLOW_TOKEN"
USERNAME_ENV = "RETRAIN_AIRFLOW_USERNAME"
PASSWORD_ENV = "RETRAIN_AIRFLOW_PASSWORD"


class AirflowApiError(RetrainError):
    """The api-server could not be reached or refused the call; the message says which and why
    (``status``: the HTTP status of a refusal)."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


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

    def set_paused(self, dag_id: str, paused: bool = True) -> dict[str, Any]:
        """Pause (or unpause) ``dag_id``: ``PATCH /api/v2/dags/{dag_id}?update_mask=is_paused``
        with ``{"is_paused": paused}``; returns the api-server's answer (the DAG, ``is_paused``
        included). A DAG the api-server does not know raises :class:`AirflowApiError` with
        ``status`` 404."""
        import httpx

        try:
            with httpx.Client(timeout=self.timeout_s) as client:
                headers = {"Authorization": f"Bearer {self._bearer(client)}"}
                r = client.patch(
                    f"{self.base_url}/api/v2/dags/{dag_id}",
                    params={"update_mask": "is_paused"},
                    json={"is_paused": paused},
                    headers=headers,
                )
        except httpx.HTTPError as exc:
            raise AirflowApiError(f"cannot reach the Airflow api-server {self.base_url}: {exc}") from exc
        if r.status_code != 200:
            raise AirflowApiError(
                f"{'pausing' if paused else 'unpausing'} {dag_id} was refused: HTTP {r.status_code} {r.text[:300]}",
                status=r.status_code,
            )
        return r.json()


def pause_dags(api: AirflowApi | None, dag_ids: Sequence[str]) -> dict[str, str]:
    """Pause each of ``dag_ids`` through ``api``; what happened to each: ``paused``, ``not found``
    (a DAG the model does not have, e.g. its guard), or why not (never raises: a retirement goes
    on without the API, and its DAGs then do nothing for a retired model)."""
    out: dict[str, str] = {}
    for dag_id in dag_ids:
        if api is None:
            out[dag_id] = f"not paused: {API_URL_ENV} is not set"
            continue
        try:
            api.set_paused(dag_id, True)
            out[dag_id] = "paused"
        except AirflowApiError as exc:
            out[dag_id] = "not found" if exc.status == 404 else f"not paused: {exc}"
    return out
