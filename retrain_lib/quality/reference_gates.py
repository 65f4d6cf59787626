"""The gate kinds that judge a candidate against a fixed reference rather than the window's
compared rows alone: ``importance_shift`` (the champion's feature-importance ranking) and
``golden`` (a fixed, versioned evaluation set with must-pass rows). Their inputs are built by
:func:`retrain_lib.pipeline.evaluation.gate_inputs`; :data:`retrain_lib.quality.gate_kinds.RUNNERS`
maps their ``type`` here."""

from __future__ import annotations

from retrain_lib.core.config_gates import Gate
from retrain_lib.core.metrics import compute_metric
from retrain_lib.quality.gate_types import GateInputs, GateResult, gate_name, number_or_none, skipped_result
from retrain_lib.stats.gate_measures import rank_changes


def run_importance_shift(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    """Fails when one of the champion's ``top_k`` features moved more than ``max_rank_change``
    places in the candidate's permutation-importance ranking: a model that now leans on other
    features than the one in production deserves a person's look before it serves."""
    if not inputs.has_champion:
        return [skipped_result(gate, "no champion yet: importance shift gate skipped")]
    assert gate.max_rank_change is not None  # required of this gate type (Gate._REQUIRED)
    cand, champ = inputs.candidate_importances, inputs.champion_importances
    if not cand or not champ:
        raise ValueError(
            "the permutation importances of candidate and champion on the compared rows were not measured "
            "(e.g. a single class in the rows)"
        )
    moves = rank_changes(champ, cand, top_k=gate.top_k)
    if not moves:
        raise ValueError("the champion's permutation importances are all 0 on the compared rows")
    worst = max(moves, key=lambda f: (moves[f], f))
    ok = moves[worst] <= gate.max_rank_change
    top = ", ".join(f"{f} {champ[f]:.3f}->{cand.get(f, 0.0):.3f}" for f in moves)
    reason = (
        f"largest rank change of the champion's top {len(moves)} features: {worst} moved {moves[worst]} "
        f"place(s) {'<=' if ok else '>'} max_rank_change {gate.max_rank_change} (importance {top})"
    )
    return [
        GateResult(
            gate_name(gate),
            None,
            float(gate.max_rank_change),
            float(moves[worst]),
            None,
            None,
            ok,
            reason,
            worst,
            "importance_shift",
            False,
            {"rank_changes": moves, "candidate": cand, "champion": champ},
        )
    ]


def run_golden(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    """The golden set's metric within ``min``/``max`` and every must-pass row predicted right;
    each check is one result, all carrying where the set is versioned (``details["source"]``)."""
    import numpy as np

    assert gate.dataset is not None  # required of this gate type (Gate._REQUIRED)
    golden = inputs.golden.get(gate.dataset)
    if golden is None:
        raise ValueError(f"the golden set {gate.dataset} was not scored")
    if golden.error is not None:
        raise ValueError(f"the golden set {gate.dataset} could not be scored: {golden.error}")
    y = np.asarray(golden.y_true, dtype=float)
    scores = np.asarray(golden.scores, dtype=float)
    if len(y) == 0:
        raise ValueError(f"the golden set {gate.dataset} has no rows")
    where = f"golden set {gate.dataset} ({len(y)} rows, DVC rev {str(golden.source.get('rev', '?'))[:10]})"
    details = {"source": dict(golden.source), "rows": int(len(y))}
    out: list[GateResult] = []
    if gate.metric is not None:
        value = number_or_none(compute_metric(inputs.task, gate.metric, y, scores))
        if value is None:
            raise ValueError(f"{gate.metric} is not a number on the {where}")
        for name, bound in (("min", gate.min), ("max", gate.max)):
            if bound is None:
                continue
            ok = value >= bound if name == "min" else value <= bound
            sign = (">=" if ok else "<") if name == "min" else ("<=" if ok else ">")
            reason = f"{gate.metric} {value:.4f} {sign} {name} {bound:g} on the {where}"
            out.append(
                GateResult(
                    f"{gate_name(gate)}_{name}",
                    gate.metric,
                    bound,
                    value,
                    None,
                    None,
                    ok,
                    reason,
                    gate.dataset,
                    "golden",
                    False,
                    details,
                )
            )
    if gate.must_pass is not None:
        out.append(_must_pass(gate, inputs.task, y, scores, golden.must_pass, where, details))
    return out


def _must_pass(gate: Gate, task: str, y, scores, mask, where: str, details: dict) -> GateResult:
    import numpy as np

    must = np.asarray(mask, dtype=bool)
    if task == "classification":
        right = (scores >= 0.5).astype(int) == y.astype(int)
        how = "predicted class at 0.5"
    else:
        if gate.tolerance is None:
            raise ValueError("a golden gate with must_pass on a regression model needs 'tolerance'")
        right = np.abs(scores - y) <= gate.tolerance
        how = f"|prediction - target| <= {gate.tolerance:g}"
    wrong = np.flatnonzero(must & ~right)
    n = int(must.sum())
    ok = len(wrong) == 0 and n > 0
    if n == 0:
        reason = f"no row of the {where} is marked {gate.must_pass}: nothing to check, so nothing passes"
    elif ok:
        reason = f"all {n} must-pass rows of the {where} right ({how})"
    else:
        rows = ", ".join(str(int(i)) for i in wrong[:10]) + (" ..." if len(wrong) > 10 else "")
        reason = f"{len(wrong)} of {n} must-pass rows of the {where} wrong ({how}): row(s) {rows}"
    return GateResult(
        f"{gate_name(gate)}_must_pass",
        None,
        float(n),
        float(n - len(wrong)),
        None,
        None,
        ok,
        reason,
        gate.dataset or "all",
        "golden",
        False,
        {**details, "must_pass_rows": n, "wrong_rows": [int(i) for i in wrong[:100]]},
    )
