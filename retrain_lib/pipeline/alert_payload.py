"""Slack Block Kit payloads of alerts: the :class:`Alert` record and its de-duplication key,
the :class:`Links` footer, mrkdwn escaping and number formatting, and the layout every alert
shares (a header, mrkdwn sections, and an attachment coloured by severity that carries the
severity, the model and the links).

The per-kind messages are built from these pieces by :mod:`retrain_lib.pipeline.alerts`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from retrain_lib.core.config_alerts import DEFAULT_SEVERITY

COLORS = {"green": "#2eb886", "yellow": "#daa038", "red": "#a30200"}
EMOJI = {"green": ":large_green_circle:", "yellow": ":large_yellow_circle:", "red": ":red_circle:"}
MAX_LISTED = 8  # failed gates / expectations / features listed in one message


@dataclass(frozen=True)
class Alert:
    """One alert: ``payload`` is what Slack receives; ``key`` identifies "the same alert"
    (kind, model and the failing items) for de-duplication."""

    kind: str
    model: str
    severity: str
    key: str
    payload: dict[str, Any] = field(hash=False)

    @property
    def text(self) -> str:
        return self.payload["text"]

    @property
    def key_hash(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]


def dedupe_key(kind: str, model: str, items: Iterable[str] = ()) -> str:
    """``kind|model|items``: what makes two alerts "the same alert" (items sorted, without repeats)."""
    return f"{kind}|{model}|{','.join(sorted(set(map(str, items))))}"


def esc(value: Any) -> str:
    """Slack's three control characters, escaped (every dynamic piece of mrkdwn text)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` characters, ending with ``…`` when cut (Slack's field limits)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def num(value: Any, signed: bool = False) -> str:
    """Four significant digits (``0.84``, ``45.31``, ``-0.07`` with ``signed`` as ``-0.07``/``+0.02``)."""
    if value is None:
        return "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "NaN"
    return f"{v:+.4g}" if signed else f"{v:.4g}"


def resolve_severity(severity: str | None, kind: str) -> str:
    """``severity``, else the default severity of ``kind``; a colour that Slack can show, or ``ValueError``."""
    sev = severity or DEFAULT_SEVERITY.get(kind, "red")
    if sev not in COLORS:
        raise ValueError(f"severity {sev!r} is not one of {', '.join(COLORS)}")
    return sev


def slack_payload(
    sev: str, title: str, sections: list[str], fallback: str, links: Links, context: str
) -> dict[str, Any]:
    """The Slack message of an alert: a header (``title``), one mrkdwn section per non-empty
    ``sections`` item, the ``text`` fallback (``fallback`` and the links), and an attachment
    coloured by severity ``sev`` that carries ``context`` and the links."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": cut(f"{EMOJI[sev]} {title}", 150), "emoji": True}}
    ]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": cut(s, 3000)}} for s in sections if s]
    plain = links.plain()
    return {
        "text": cut(f"{EMOJI[sev]} {fallback}" + (f"; {plain}" if plain else ""), 3000),
        "blocks": blocks,
        "attachments": [
            {
                "color": COLORS[sev],
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": cut(f"severity *{sev}* · {context}", 3000)},
                            {"type": "mrkdwn", "text": cut(links.mrkdwn(), 3000)},
                        ],
                    }
                ],
            }
        ],
    }


def context_line(model: str, as_of: str | None = None, *more: str) -> str:
    """``model `m` · as of 2026-02-05 · <more>``: the context line of an alert's attachment."""
    parts = [f"model `{esc(model)}`"]
    if as_of:
        parts.append(f"as of {esc(as_of)}")
    return " · ".join([*parts, *(m for m in more if m)])


def bullets(lines: list[str], total: int | None = None) -> str:
    """The first :data:`MAX_LISTED` of ``lines`` as bullets, then ``… and n more`` (of ``total``)."""
    total = len(lines) if total is None else total
    shown = lines[:MAX_LISTED]
    more = f"\n… and {total - len(shown)} more" if total > len(shown) else ""
    return "\n".join(f"• {line}" for line in shown) + more


@dataclass(frozen=True)
class Links:
    """Where to look. ``drift_report`` is a URL (the report as an MLflow artifact) and/or
    ``drift_report_path`` the file the monitor wrote; ``extra`` are ``(label, url)`` pairs
    shown first (e.g. where to answer an approval)."""

    task_log: str | None = None
    mlflow_run: str | None = None
    drift_report: str | None = None
    drift_report_path: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    runbook: str | None = None  # what to do (docs/runbooks/<kind>.md, served by the UI plugin)

    def _items(self) -> list[tuple[str, str | None, str | None]]:
        """``(label, url, path)`` in the order they are shown."""
        items: list[tuple[str, str | None, str | None]] = [(label, url, None) for label, url in self.extra]
        if self.mlflow_run:
            items.append(("MLflow run", self.mlflow_run, None))
        if self.drift_report or self.drift_report_path:
            items.append(("drift report", self.drift_report, self.drift_report_path))
        if self.task_log:
            items.append(("task log", self.task_log, None))
        if self.runbook:
            items.append(("runbook", self.runbook, None))
        return items

    def plain(self) -> str:
        """``MLflow run <url>, drift report <url>, task log <url>`` (the ``text`` fallback)."""
        return ", ".join(f"{label} {esc(url or path)}" for label, url, path in self._items())

    def mrkdwn(self) -> str:
        """``<url|MLflow run> · <url|drift report> · <url|task log>``."""
        parts = []
        for label, url, path in self._items():
            parts.append(f"<{esc(url)}|{label}>" if url else f"{label} `{esc(path)}`")
        return " · ".join(parts) or "no links"
