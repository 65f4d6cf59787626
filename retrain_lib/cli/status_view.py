"""The text ``retrain status`` prints: the fleet as one row per model, and one model in detail
(versions, rollout, last drift check, drift trend, last gates, last decisions)."""

from __future__ import annotations

from retrain_lib.cli.output import table
from retrain_lib.tools.status_lifecycle import lifecycle_text

_GATES_TEXT: dict[bool | None, str] = {True: "passed", False: "FAILED"}  # the last gates' ``passed``


def _fmt(value, spec: str = "", none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec and isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def _v(version) -> str:
    return f"v{version}" if version else "-"


def _moved(decision: dict) -> str:
    """``v1->v2`` (``none->v1`` for a first champion, ``v2->none`` for a removed alias)."""
    return f"{_v(decision.get('before')).replace('-', 'none')}->{_v(decision.get('after')).replace('-', 'none')}"


def _rollout_text(r: dict) -> str:
    if r["mode"] == "canary":
        return f"canary {r['canary_percent']:g}%" + (f" by {r['sticky_key']}" if r["sticky_key"] else "")
    return r["mode"]


def _guard_text(g: dict | None) -> str:
    if not g:
        return "-"
    state = "rolled back" if g["state"] == "rollback" else g["state"]
    return f"{state} v{g['version']}"


def print_fleet(fleet: dict, out) -> None:
    """The fleet, one row per model, then the config problems."""
    rows = []
    for m in fleet["models"]:
        mon = m["last_monitor"] or {}
        last = m["last_decision"] or {}
        gates = m["last_gates"] or {}
        rows.append(
            [
                m["model"],
                _v(m["aliases"].get("champion")),
                _v(m["aliases"].get("challenger")),
                _v(m["aliases"].get("previous-champion")),
                _rollout_text(m["rollout"]),
                _guard_text(m.get("guard")),
                _fmt(mon.get("as_of")),
                _fmt(mon.get("action")),
                _fmt(mon.get("drifted_share"), ".0%"),
                _GATES_TEXT.get(gates.get("passed"), "-"),
                lifecycle_text(m.get("lifecycle")),
                f"{last['as_of'] or last['time'][:10]} {last['event']}"
                + (f" {_moved(last)}" if last.get("after") else "")
                if last
                else "-",
            ]
        )
    table(
        [
            "model",
            "champion",
            "challenger",
            "previous",
            "rollout",
            "guard",
            "last check",
            "action",
            "drifted",
            "gates",
            "lifecycle",
            "last decision",
        ],
        rows,
        out,
    )
    for p in fleet["config_problems"]:
        print(f"config problem: {p['file']}:{p['line']}: {p['field']}: {p['reason']}", file=out)
    page = fleet.get("page") or {}
    if page.get("pages", 1) > 1:
        more = f"; next: --page {page['next']} --per-page {page['per_page']}" if page.get("next") else ""
        print(
            f"page {page['page']} of {page['pages']}: models {page['first']}-{page['last']} of {page['total']}{more}",
            file=out,
        )


def print_model(m: dict, out) -> None:
    """One model in detail: versions, last drift check, drift trend, last gates, last decisions."""
    _print_versions(m, out)
    _print_last_drift_check(m["last_monitor"], out)
    _print_drift_trend(m["drift_trend"], out)
    _print_last_gates(m["last_gates"], out)
    _print_decisions(m, out)


def _print_versions(m: dict, out) -> None:
    print(
        f"{m['model']}  (owner {_fmt(m['owner'])}, {_fmt(m['task'])}, deploy {_fmt(m['deploy_mode'])}, "
        f"config {_fmt(m['config'])})",
        file=out,
    )
    print(
        f"rollout: {_rollout_text(m['rollout'])}; guard: {_guard_text(m.get('guard'))}; "
        f"latest registered version {_v(m['latest_version'])}",
        file=out,
    )
    if (m.get("guard") or {}).get("reason"):
        print(f"guard: {m['guard']['reason']}", file=out)
    if (m.get("lifecycle") or {}).get("status", "active") != "active":
        print(f"lifecycle: {m['lifecycle']['explain']}", file=out)
    print(file=out)
    metric_names = sorted({k for v in m["versions"].values() for k in (v.get("metrics") or {})})[:4]
    rows = [
        [
            ", ".join(v.get("aliases") or []),
            _v(v["version"]),
            _fmt(v.get("trained_as_of")),
            _fmt(v.get("promoted_as_of")),
            _fmt(v.get("gates_passed")),
            *[_fmt((v.get("metrics") or {}).get(k), ".4f") for k in metric_names],
            _fmt(v.get("run_id")),
        ]
        for v in sorted(m["versions"].values(), key=lambda v: int(v["version"]), reverse=True)
    ]
    table(["alias", "version", "trained as of", "promoted as of", "gates", *metric_names, "run"], rows, out)


def _print_last_drift_check(mon: dict | None, out) -> None:
    print(file=out)
    if mon is None:
        print("last drift check: none in the ledger", file=out)
    else:
        print(
            f"last drift check {mon['as_of']}: {_fmt(mon['action']).upper()}, drifted share "
            f"{_fmt(mon['drifted_share'], '.0%')} (dataset drift at {_fmt(mon.get('drift_share_threshold'), '.0%')})"
            f"; report {_fmt(mon['drift_report'])}",
            file=out,
        )
        for r in mon["reasons"]:
            print(f"  - {r}", file=out)
        table(
            ["feature", "method", "score", "p_value", "threshold", "drifted"],
            [
                [
                    _fmt(f.get("name")),
                    _fmt(f.get("method")),
                    _fmt(f.get("score"), ".4f"),
                    _fmt(f.get("p_value"), ".3g"),
                    _fmt(f.get("threshold"), "g"),
                    "YES" if f.get("drifted") else "no",
                ]
                for f in mon["features"]
            ],
            out,
        )


def _print_drift_trend(trend: list[dict], out) -> None:
    if trend:
        print(file=out)
        print(f"drift trend (last {len(trend)} checks):", file=out)
        table(
            ["as of", "action", "drifted", "drifted features"],
            [
                [t["as_of"], _fmt(t["action"]), _fmt(t["drifted_share"], ".0%"), ", ".join(t["drifted"]) or "-"]
                for t in trend
            ],
            out,
        )


def _print_last_gates(g: dict | None, out) -> None:
    print(file=out)
    if g is None:
        print("last gates: none in the ledger", file=out)
    else:
        print(f"last gates {g['as_of']}: {'PASSED' if g['passed'] else 'FAILED'} (run {g['run_id']})", file=out)
        if g["results"]:
            table(
                ["gate", "metric", "slice", "observed", "threshold", "champion", "passed"],
                [
                    [
                        _fmt(r.get("gate")),
                        _fmt(r.get("metric")),
                        _fmt(r.get("slice")),
                        _fmt(r.get("observed"), ".4f"),
                        _fmt(r.get("threshold"), ".4f"),
                        _fmt(r.get("champion"), ".4f"),
                        "skipped" if r.get("skipped") and r.get("passed") else ("PASS" if r.get("passed") else "FAIL"),
                    ]
                    for r in g["results"]
                ],
                out,
            )
        else:
            for reason in g["failed"]:
                print(f"  FAIL {reason}", file=out)


def _print_decisions(m: dict, out) -> None:
    print(file=out)
    print(f"last decisions ({len(m['decisions'])} of {m['ledger_records']} ledger records):", file=out)
    table(
        ["seq", "as of", "event", "champion", "actor", "reason"],
        [
            [
                str(d["seq"]),
                _fmt(d["as_of"]),
                d["event"],
                _moved(d) if d.get("after") or d.get("before") else "-",
                _fmt(d["actor"]),
                (d["reason"] or "")[:80],
            ]
            for d in m["decisions"]
        ],
        out,
    )
