"""The post-deploy guard's records and its decision: is a newly promoted champion, watched
live on the serving gateway's prediction log, still fit to serve?

A guard starts after every promotion (:class:`GuardStart`: the version watched, the
``previous-champion`` it would roll back to, since when). At each check the facts read from
the log (:class:`GuardFacts`, gathered by :mod:`retrain_lib.pipeline.guard_run`) are judged by
the pure :func:`decide_guard` against :class:`GuardLimits` (the config's ``guard:`` block):

* **error rate**: an always-valid one-sample test (mSPRT of
  :mod:`retrain_lib.stats.rollout_stats`) of ``rate > max_error_rate``. Rate ``~ (errors +
  0.5) / (requests + 1)`` gives the plug-in variance, the mixing variance is
  ``max_error_rate ** 2``. It needs ``min_requests``; a false alarm has probability at most
  ``alpha`` however often the guard looks.
* **p95 latency** of the answered requests above ``max_p95_ms`` (after ``min_requests``
  answered ones): a threshold rule on the cumulative sample, not a sequential test.
* **labelled loss**, paired: on every labelled request the champion answered, its logged
  output and ``previous-champion``'s score of the same logged features give two per-request
  losses (:func:`~retrain_lib.stats.rollout_stats.loss_per_request`); the mSPRT on their
  differences (``d = mean(champion - previous)``, ``s2 = var / n``, ``tau2 = 0.01 var``)
  rolls back when ``p <= alpha`` and ``d > margin``: the champion is shown worse on the same
  requests. False rollback of a champion no worse than ``margin``: at most ``alpha`` over
  all looks (asymptotically, plug-in variance; hence ``min_labels``).
* **output shift**, paired: previous-champion also scores the newest answered requests (up to
  :data:`~retrain_lib.pipeline.guard_run.SHIFT_SAMPLE`); the PSI of the champion's answers
  against those scores above ``max_output_psi`` rolls back only once ``min_labels`` labels
  exist and their paired interval does not lie at or below zero (a better model after a real
  change answers differently too); until then it is a warning, kept in the clean note.

Any limit broken -> ``rollback`` (``alarm`` when there is no ``previous-champion`` to go back
to, as after a rollback); the champion no longer the version watched -> ``superseded``;
the guard's time over with nothing broken -> ``clean``; otherwise ``continue``.

Example::

    >>> start = GuardStart(model="m", version="3", previous="2", since="2026-01-01T00:00:00+00:00")
    >>> facts = GuardFacts(champion_now="3", elapsed_s=60, requests=400, errors=200, p95_ms=5.0)
    >>> decide_guard(start, facts, GuardLimits(), minutes=120).action
    'rollback'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from retrain_lib.stats.rollout_stats import DEFAULT_TAU2_SHARE, MSPRT, msprt

CONTINUE, CLEAN, ROLLBACK, ALARM, SUPERSEDED = "continue", "clean", "rollback", "alarm", "superseded"
ACTIONS = (CONTINUE, CLEAN, ROLLBACK, ALARM, SUPERSEDED)
FINAL = (CLEAN, ROLLBACK, ALARM, SUPERSEDED)


@dataclass(frozen=True)
class GuardStart:
    """What a guard watches: ``version`` (the new champion) of ``model``, served since
    ``since`` (ISO time: the promotion, or the guard's start when that is later than
    ``minutes`` ago); ``previous`` is the rollback target (``None``: nothing to go back to);
    ``promotion`` the ledger event that made ``version`` champion (``promote``, ``rollback``);
    ``minutes`` how long it watches (the config's ``guard.minutes`` unless the run set it)."""

    model: str
    version: str
    previous: str | None
    since: str
    started: str = ""
    as_of: str | None = None
    promotion: str = "promote"
    minutes: float | None = None

    def to_xcom(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_xcom(cls, data: dict[str, Any]) -> GuardStart:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class GuardLimits:
    """The limits of :func:`decide_guard` (the config's ``guard:`` block); ``None`` turns a
    limit off."""

    max_error_rate: float | None = 0.05
    max_p95_ms: float | None = None
    min_requests: int = 50
    min_labels: int = 100
    alpha: float = 0.01
    margin: float = 0.0
    max_output_psi: float | None = 0.25

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise ValueError(
                f"The 'alpha' parameter of GuardLimits must be a float in (0, 1). Got {self.alpha!r} instead."
            )
        for name in ("min_requests", "min_labels"):
            if getattr(self, name) < 2:
                raise ValueError(
                    f"The '{name}' parameter of GuardLimits must be an int >= 2. Got {getattr(self, name)!r} instead."
                )

    @classmethod
    def from_config(cls, guard) -> GuardLimits:
        """From a :class:`~retrain_lib.core.config_release.Guard` config block."""
        return cls(
            max_error_rate=guard.max_error_rate,
            max_p95_ms=guard.max_p95_ms,
            min_requests=guard.min_requests,
            min_labels=guard.min_labels,
            alpha=guard.alpha,
            margin=guard.margin,
            max_output_psi=guard.max_output_psi,
        )


@dataclass(frozen=True)
class GuardFacts:
    """What the prediction log says of the watched champion since the guard's ``since``.

    ``champion_now``: the ``champion`` alias now; ``elapsed_s``: seconds since the guard
    started; ``requests``/``errors``: the champion's requests (failed ones included) and
    failures; ``p95_ms``: p95 latency of the answered ones (``None``: none). ``labelled``:
    labelled answered requests scored by both versions; ``loss_diff_mean`` /
    ``loss_diff_var``: mean and sample variance (ddof=1) of per-request loss differences
    (champion minus previous-champion, same requests); ``champion_loss`` /
    ``previous_loss``: the two mean losses (for the explanation). ``output_psi``: PSI of the
    champion's answers against previous-champion's scores of the same answered requests
    (``output_pairs`` of them, the newest), once there are ``min_requests``."""

    champion_now: str | None
    elapsed_s: float
    requests: int = 0
    errors: int = 0
    p95_ms: float | None = None
    labelled: int = 0
    loss_diff_mean: float | None = None
    loss_diff_var: float | None = None
    champion_loss: float | None = None
    previous_loss: float | None = None
    output_psi: float | None = None
    output_pairs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuardFacts:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class GuardCheck:
    """One limit at one look: ``observed`` vs ``limit``, ``breached``, and why (``p_value``
    of the sequential tests; ``judged=False`` when there were too few requests or labels)."""

    name: str
    observed: float | None
    limit: float | None
    breached: bool
    judged: bool
    reason: str
    p_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _finite_or_none(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class GuardDecision:
    """The outcome of :func:`decide_guard`: ``action`` (one of :data:`ACTIONS`), one reason per
    broken limit (or why the guard ended), and every check with its figures."""

    action: str
    reasons: tuple[str, ...]
    checks: tuple[GuardCheck, ...] = field(default_factory=tuple)

    @property
    def final(self) -> bool:
        """The guard stops here (anything but ``continue``)."""
        return self.action in FINAL

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reasons": list(self.reasons), "checks": [c.to_dict() for c in self.checks]}


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def error_rate_check(requests: int, errors: int, limits: GuardLimits) -> GuardCheck:
    """Is the error rate shown above ``limits.max_error_rate``? (see the module docstring)"""
    limit = limits.max_error_rate
    rate = errors / requests if requests else None
    if limit is None:
        return GuardCheck("error_rate", rate, None, False, False, "no error-rate limit")
    if requests < limits.min_requests:
        return GuardCheck(
            "error_rate", rate, limit, False, False, f"{requests} requests < min_requests {limits.min_requests}"
        )
    rate = errors / requests  # requests >= min_requests >= 2
    smoothed = (errors + 0.5) / (requests + 1)
    test = msprt(rate, smoothed * (1 - smoothed) / requests, limit**2, limit, limits.alpha)
    breached = test.p_value <= limits.alpha and rate > limit
    reason = (
        f"error rate {rate:.2%} of {requests} requests ({errors} failed) vs limit {limit:.2%}: "
        f"always-valid p={test.p_value:.3g} (alpha {limits.alpha:g})"
    )
    return GuardCheck("error_rate", rate, limit, breached, True, reason, test.p_value)


def latency_check(answered: int, p95_ms: float | None, limits: GuardLimits) -> GuardCheck:
    """Is the p95 latency of the answered requests above ``limits.max_p95_ms``?"""
    limit = limits.max_p95_ms
    if limit is None:
        return GuardCheck("p95_latency_ms", p95_ms, None, False, False, "no latency limit")
    if answered < limits.min_requests or p95_ms is None:
        return GuardCheck(
            "p95_latency_ms",
            p95_ms,
            limit,
            False,
            False,
            f"{answered} answered requests < min_requests {limits.min_requests}",
        )
    breached = p95_ms > limit
    return GuardCheck(
        "p95_latency_ms", p95_ms, limit, breached, True, f"p95 latency {p95_ms:.1f} ms vs limit {limit:g} ms"
    )


def _paired_loss_test(facts: GuardFacts, limits: GuardLimits, margin: float) -> MSPRT:
    """The always-valid test of the mean paired loss difference (champion minus previous) of
    ``facts``' labelled requests against ``margin`` (facts with ``loss_diff_mean``/``_var``)."""
    n, mean, var = facts.labelled, facts.loss_diff_mean, facts.loss_diff_var
    assert mean is not None and var is not None  # callers check min_labels first
    return msprt(mean, var / n, max(DEFAULT_TAU2_SHARE * var, 1e-12), margin, limits.alpha)


def loss_check(facts: GuardFacts, limits: GuardLimits, previous: str | None) -> GuardCheck:
    """Is the champion shown worse than ``previous`` on the same labelled requests? (paired
    mSPRT, see the module docstring)"""
    n, mean, var = facts.labelled, facts.loss_diff_mean, facts.loss_diff_var
    if previous is None:
        return GuardCheck("paired_loss", mean, limits.margin, False, False, "no previous-champion to compare with")
    if n < limits.min_labels or mean is None or var is None:
        return GuardCheck(
            "paired_loss", mean, limits.margin, False, False, f"{n} labelled requests < min_labels {limits.min_labels}"
        )
    test = _paired_loss_test(facts, limits, limits.margin)
    lo, hi = test.ci
    breached = test.p_value <= limits.alpha and mean > limits.margin
    losses = ""
    if facts.champion_loss is not None and facts.previous_loss is not None:
        losses = f" (mean loss {facts.champion_loss:.4g} vs {facts.previous_loss:.4g})"
    reason = (
        f"per-request loss of the champion minus previous-champion v{previous} on the same {n} labelled "
        f"requests: {mean:+.4g}{losses}, {1 - limits.alpha:.0%} always-valid CI [{lo:.4g}, {hi:.4g}], "
        f"p={test.p_value:.3g} vs margin {limits.margin:g}"
    )
    return GuardCheck("paired_loss", mean, limits.margin, breached, True, reason, test.p_value)


def output_shift_check(facts: GuardFacts, limits: GuardLimits, previous: str | None) -> GuardCheck:
    """Have the champion's answers moved far from previous-champion's on the same requests
    (PSI above ``max_output_psi``) while the labels do not show the champion no worse? A
    better model after a real change answers differently too: the shift alone never rolls
    back; it waits for ``min_labels`` labels and is waived when their paired always-valid
    interval lies at or below zero (the champion no worse at all)."""
    psi, limit = facts.output_psi, limits.max_output_psi
    if limit is None or previous is None:
        why = "no output-shift limit" if limit is None else "no previous-champion to compare with"
        return GuardCheck("output_shift", psi, limit, False, False, why)
    if psi is None:
        return GuardCheck(
            "output_shift", None, limit, False, False, f"fewer than {limits.min_requests} answered requests"
        )
    shown = f"output PSI {psi:.3f} vs previous-champion v{previous} on the same {facts.output_pairs} requests"
    if psi <= limit:
        return GuardCheck("output_shift", psi, limit, False, True, f"{shown} <= {limit:g}")
    n, mean, var = facts.labelled, facts.loss_diff_mean, facts.loss_diff_var
    if n < limits.min_labels or mean is None or var is None:
        return GuardCheck(
            "output_shift",
            psi,
            limit,
            False,
            False,
            f"warning: {shown} > {limit:g}; waiting for labels to judge it ({n} < min_labels {limits.min_labels})",
        )
    lo, hi = _paired_loss_test(facts, limits, 0.0).ci
    if hi <= 0:
        return GuardCheck(
            "output_shift",
            psi,
            limit,
            False,
            True,
            f"warning only: {shown} > {limit:g}, but the labels show the champion no worse "
            f"(loss difference CI [{lo:.4g}, {hi:.4g}] on {n} labelled requests)",
        )
    return GuardCheck(
        "output_shift",
        psi,
        limit,
        True,
        True,
        f"{shown} > {limit:g} and the labels do not show the champion no worse "
        f"(loss difference CI [{lo:.4g}, {hi:.4g}] on {n} labelled requests)",
    )


def decide_guard(start: GuardStart, facts: GuardFacts, limits: GuardLimits, *, minutes: float) -> GuardDecision:
    """Judge one look of the guard of ``start`` (see the module docstring). Pure: no I/O."""
    if facts.champion_now != start.version:
        return GuardDecision(
            SUPERSEDED,
            (f"champion is now v{facts.champion_now}, not v{start.version} that this guard watched; guard stopped",),
        )
    answered = facts.requests - facts.errors
    checks = (
        error_rate_check(facts.requests, facts.errors, limits),
        latency_check(answered, facts.p95_ms, limits),
        loss_check(facts, limits, start.previous),
        output_shift_check(facts, limits, start.previous),
    )
    broken = [c for c in checks if c.breached]
    if broken:
        reasons = tuple(f"{c.name}: {c.reason}" for c in broken)
        if start.previous is None:
            return GuardDecision(ALARM, (*reasons, "no previous-champion to roll back to: alerting only"), checks)
        return GuardDecision(ROLLBACK, reasons, checks)
    if facts.elapsed_s >= minutes * 60:
        judged = [c.name for c in checks if c.judged]
        note = f"clean after {minutes:g} minutes: {facts.requests} requests, {facts.labelled} labelled; " + (
            f"judged {', '.join(judged)}" if judged else "too little traffic to judge any limit"
        )
        warnings = [c.reason for c in checks if c.reason.startswith("warning")]
        if warnings:
            note += "; " + "; ".join(warnings)
        return GuardDecision(CLEAN, (note,), checks)
    return GuardDecision(CONTINUE, (), checks)
