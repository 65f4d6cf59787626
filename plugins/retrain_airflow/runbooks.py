"""The on-call runbooks (``docs/runbooks/<kind>.md``, one per alert kind) as pages of the
fleet app: ``GET /retrain/runbooks/`` lists them, ``GET /retrain/runbooks/{kind}`` renders one
(Markdown to HTML with raw HTML escaped). Every Slack alert links the runbook of its kind
(:func:`retrain_lib.pipeline.alert_links.runbook_url`).

They are looked up in ``docs/runbooks`` next to the config directory (the repository's
layout, and the image's: ``/opt/retrain/configs`` and ``/opt/retrain/docs``), else in the
checkout this plugin runs from.
"""

from __future__ import annotations

import re
from pathlib import Path

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
HERE = Path(__file__).resolve().parents[2] / "docs" / "runbooks"  # plugins/retrain_airflow/.. /..


def runbooks_dir(config_dir: Path | None) -> Path | None:
    """The first of ``<config_dir>/../docs/runbooks`` and this checkout's that exists."""
    for candidate in ([config_dir.parent / "docs" / "runbooks"] if config_dir else []) + [HERE]:
        if candidate.is_dir():
            return candidate
    return None


def runbook_file(directory: Path | None, kind: str) -> Path | None:
    """``<directory>/<kind>.md`` when ``kind`` is a plain name and the file exists (no path ever
    leaves the directory)."""
    if directory is None or not NAME.fullmatch(kind):
        return None
    path = directory / f"{kind}.md"
    return path if path.is_file() else None


def listed(directory: Path | None) -> list[tuple[str, str]]:
    """``(kind, title)`` of every runbook, the index (README.md) left out."""
    if directory is None:
        return []
    out = []
    for path in sorted(directory.glob("*.md")):
        if path.stem.lower() == "readme" or not NAME.fullmatch(path.stem):
            continue
        first = next((line for line in path.read_text().splitlines() if line.startswith("# ")), f"# {path.stem}")
        out.append((path.stem, first[2:].strip()))
    return out


def to_html(markdown_text: str) -> str:
    """Markdown (CommonMark and tables) as HTML; raw HTML in the source is escaped, not kept."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown_text)
