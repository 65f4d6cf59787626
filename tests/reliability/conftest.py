"""The reliability suite: each test reports what it tried with ``record_property``
(``reliability`` = ``fault``, ``race`` or ``secrets``, plus ``race_trials`` /
``race_violations`` / ``secret_leaks``); ``benchmarks/reliability_report.py`` adds them up
from the JUnit XML. Shared helpers are in ``harness.py``."""

from __future__ import annotations

import pytest


@pytest.fixture
def reliability(record_property):
    """``reliability(kind, **figures)``: what this test counts for in the reliability report."""

    def record(kind: str, **figures) -> None:
        record_property("reliability", kind)
        for k, v in figures.items():
            record_property(k, v)

    return record
