"""The gateway's HTTP payloads: parsing and validating request bodies into
:class:`PredictRequest` and :class:`FeedbackRequest` (a :class:`RequestError` with every
problem found, ``{"index", "field", "reason"}``, when a body is invalid), and the
:class:`Reply` records the service answers with."""

import math
from dataclasses import dataclass
from typing import Any

from retrain_lib.serving.schema import FeatureSchema

MAX_RECORDS = 10_000


class RequestError(Exception):
    """A request the gateway refuses: HTTP ``status`` and the ``detail`` of the answer."""

    def __init__(self, status: int, detail):
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Reply:
    """An answer of the service: a JSON ``body`` and its HTTP ``status``."""

    body: Any
    status: int = 200


@dataclass(frozen=True)
class PredictRequest:
    """Valid records of ``model`` to score, with the routing entity of each (or None)."""

    model: str
    records: list[dict]
    entity: list


@dataclass(frozen=True)
class FeedbackRequest:
    """Late labels for answered requests of ``model``: ``(request_id, label)`` pairs."""

    model: str
    labels: list[tuple[str, float]]


def _problem(index, field: str | None, reason: str) -> dict[str, Any]:
    return {"index": index, "field": field, "reason": reason}


def parse_predict(model: str, schema: FeatureSchema, body: Any) -> PredictRequest:
    """The predict body ``{"records": [...]}`` or ``{"record": {...}}`` (optional ``"entity"``)
    as a request; raises :class:`RequestError` (422, or 413 past ``MAX_RECORDS``)."""
    if not isinstance(body, dict):
        raise RequestError(
            422,
            [_problem(None, None, "the body must be a JSON object with 'records' (a list) or 'record' (an object)")],
        )
    problems = [
        _problem(None, k, "unexpected top-level field; use 'records' or 'record' and optionally 'entity'")
        for k in body
        if k not in ("records", "record", "entity")
    ]
    if ("records" in body) == ("record" in body):
        problems.append(_problem(None, "records", "give exactly one of 'records' (a list) or 'record' (an object)"))
        raise RequestError(422, problems)
    if "record" in body:
        records = [body["record"]]
        entity = [body["entity"]] if "entity" in body else None
    else:
        records, entity = _records_and_entity(body, problems)
    if entity is not None:
        for i, e in enumerate(entity if isinstance(entity, list) else []):
            if e is not None and not isinstance(e, str | int):
                problems.append(_problem(i, "entity", "must be a string, integer or null"))
    problems += schema.check(records)
    if problems:
        raise RequestError(422, problems)
    return PredictRequest(model, records, entity or [None] * len(records))


def _records_and_entity(body: dict, problems: list) -> tuple[list, Any]:
    """``records`` and ``entity`` of a ``{"records": [...]}`` body; raises when the records
    are not a usable list, adds to ``problems`` when the entity does not match them."""
    records = body["records"]
    entity = body.get("entity")
    if not isinstance(records, list) or not records:
        raise RequestError(422, [*problems, _problem(None, "records", "must be a non-empty list of objects")])
    if len(records) > MAX_RECORDS:
        raise RequestError(
            413, [_problem(None, "records", f"{len(records)} records; at most {MAX_RECORDS} per request")]
        )
    if entity is not None and (not isinstance(entity, list) or len(entity) != len(records)):
        problems.append(
            _problem(
                None, "entity", f"with 'records', 'entity' must be a list of {len(records)} values (one per record)"
            )
        )
    return records, entity


def parse_feedback(model: str, body: Any) -> FeedbackRequest:
    """The feedback body ``{"labels": [{"request_id", "label"}, ...]}`` as a request; raises
    :class:`RequestError` (422) with every problem."""
    labels = body.get("labels") if isinstance(body, dict) else None
    if not isinstance(labels, list) or not labels:
        raise RequestError(422, [_problem(None, "labels", "must be a non-empty list of {request_id, label}")])
    problems, pairs = [], []
    for i, item in enumerate(labels):
        if not isinstance(item, dict) or set(item) - {"request_id", "label"}:
            problems.append(_problem(i, None, "must be an object with request_id and label"))
            continue
        rid, label = item.get("request_id"), item.get("label")
        if not isinstance(rid, str) or not rid:
            problems.append(_problem(i, "request_id", "must be a non-empty string"))
        if isinstance(label, bool):
            label = int(label)
        if not isinstance(label, int | float) or not math.isfinite(label):
            problems.append(_problem(i, "label", "must be a finite number"))
        else:
            pairs.append((str(rid), float(label)))  # a str: else a problem was noted above
    if problems:
        raise RequestError(422, problems)
    return FeedbackRequest(model, pairs)


def predictions_reply(model: str, ids: list[str], versions: list[str], arms: list[str], outputs: list) -> Reply:
    """The answer to a scored predict request: one prediction per record, in order."""
    return Reply(
        {
            "model": model,
            "predictions": [
                {"request_id": rid, "version": v, "arm": a, "prediction": o}
                for rid, v, a, o in zip(ids, versions, arms, outputs)
            ],
        }
    )
