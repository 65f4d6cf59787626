"""``retrain serve``, ``retrain replay`` and ``retrain promote``: the serving gateway, its
replay client, and a promotion by hand.

Hooked into :mod:`retrain_lib.cli.app` by ``register(sub)``; also runs alone as
``python -m retrain_lib.cli.serving_cmds serve|replay ...``. Exit codes as in ``retrain``:
0 ok; 1 the run finished with failures (replay errors); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from retrain_lib.cli.output import say
from retrain_lib.cli.parsing import add_config_dir, add_format
from retrain_lib.cli.runner import run_commands
from retrain_lib.core.config import load_model_config
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, RegistryError, StaleChampionError
from retrain_lib.core.settings import load_settings
from retrain_lib.store.registry import ensure_gateway_webhook
from retrain_lib.tools.airflow_api import API_URL_ENV, AirflowApi, AirflowApiError


def _days(value: str) -> tuple:
    import datetime as dt

    first, sep, last = value.partition("..")
    try:
        start = dt.date.fromisoformat(first)
        end = dt.date.fromisoformat(last) if sep else start
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day range; use YYYY-MM-DD..YYYY-MM-DD") from None
    if end < start:
        raise argparse.ArgumentTypeError(f"{value!r}: the range ends before it starts")
    return start, end


def _positive(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return v


def _pin(value: str) -> tuple[str, str]:
    model, sep, source = value.partition("=")
    if not sep or not model.strip() or not source.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is not MODEL=SOURCE (e.g. credit_default=7)")
    return model.strip(), source.strip()


def cmd_serve(args) -> int:
    # lazy: SQLAlchemy (replay, promote: pandas); each command loads only what it runs
    from retrain_lib.serving.gateway import serve

    token = None
    if args.token_env:
        token = os.environ.get(args.token_env) or None
        if token is None and args.require_token:
            print(
                f"error: --require-token: environment variable {args.token_env} is empty or unset; set it to the "
                "bearer token clients must send",
                file=sys.stderr,
            )
            return EXIT_BAD_INPUT
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    pins = dict(args.pin or [])
    webhook_secret = (os.environ.get(args.webhook_secret_env) or "").strip() or None
    settings = load_settings(args.config_dir)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "serving": f"http://{args.host}:{args.port}",
                    "models": models or "all",
                    "auth": token is not None,
                    "log": not args.no_log,
                    "registry_events": webhook_secret is not None,
                }
            ),
            flush=True,
        )
    else:
        print(
            f"serving {', '.join(models) if models else 'all models'} on http://{args.host}:{args.port} "
            f"(auth {'on' if token else 'off'}, prediction log {'off' if args.no_log else 'on'}, registry events "
            f"{'pushed to /v1/registry/events' if webhook_secret else 'off: polling only'})",
            flush=True,
        )
    serve(
        settings,
        host=args.host,
        port=args.port,
        models=models,
        auth_token=token,
        refresh_s=args.refresh_s,
        log_url=args.log_url,
        log_predictions=not args.no_log,
        max_body_bytes=args.max_body_bytes,
        pins=pins,
        webhook_secret=webhook_secret,
    )
    return EXIT_OK


def cmd_replay(args) -> int:
    from retrain_lib.serving.replay import replay

    cfg = load_model_config(args.config)
    token = os.environ.get(args.token_env) if args.token_env else None
    say(
        args,
        f"sending {cfg.name}'s records under {args.data} to {args.url} at {args.rate:g} request(s)/s"
        + (f", at most {args.limit}" if args.limit else ""),
    )
    summary = replay(
        cfg,
        args.data,
        url=args.url,
        rate=args.rate,
        days=args.days,
        label_delay_s=args.label_delay_s,
        limit=args.limit,
        token=token,
        concurrency=args.concurrency,
    )
    if args.format == "json":
        print(json.dumps(summary))
    else:
        print(
            f"sent {summary['sent']} ({summary['ok']} ok, {summary['errors']} errors) at {summary['rps']:.1f} req/s; "
            f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms; labels posted {summary['labels_posted']}"
        )
    return EXIT_FAILED if summary["errors"] else EXIT_OK


def _has_config(settings, model: str) -> bool:
    """Whether ``model`` has a config; says so on stderr when it has none."""
    path = settings.models_dir / f"{model}.yaml"
    if not path.is_file():
        print(f"error: unknown model {model!r}: no config {path}", file=sys.stderr)
    return path.is_file()


def cmd_promote(args) -> int:
    from retrain_lib.pipeline.promotion import promote_version

    settings = load_settings(args.config_dir)
    if not _has_config(settings, args.model):
        return EXIT_BAD_INPUT
    try:
        say(
            args,
            f"promoting {args.model} version {args.version}: "
            + ("" if args.skip_serving_check else "a fresh gateway process serves it first, then ")
            + "compare-and-swap on the champion alias, ledger entry (MLflow loads first)",
        )
        out = promote_version(
            args.model,
            args.version,
            settings=settings,
            reason=args.reason,
            actor=f"cli/{os.environ.get('USER', 'unknown')}",
            as_of=args.as_of,
            expected_champion=args.expected_champion,
            check_serving=not args.skip_serving_check,
        )
    except StaleChampionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - an unknown version comes back from MLflow
        if type(exc).__name__ == "MlflowException":
            print(f"error: {args.model} version {args.version}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    print(
        json.dumps(out, indent=2)
        if args.format == "json"
        else (
            f"{args.model}: version {out['version']} is the champion ({out['reason']})"
            if out["promoted"]
            else f"{args.model}: {out['reason']}"
        )
    )
    if out["promoted"]:
        _guard_hint(args.model, out["version"], settings, args.as_of)
    return EXIT_FAILED if out.get("refused") else EXIT_OK


def cmd_rollback(args) -> int:
    from retrain_lib.pipeline.promotion import rollback_model

    settings = load_settings(args.config_dir)
    if not _has_config(settings, args.model):
        return EXIT_BAD_INPUT
    if not args.reason.strip():
        print("error: a rollback by hand needs a reason (kept in the ledger); pass --reason", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        out = rollback_model(
            args.model,
            settings=settings,
            as_of=args.as_of,
            actor=f"cli/{os.environ.get('USER', 'unknown')}",
            reason=f"by hand: {args.reason}",
            expected_champion=args.expected_champion,
        )
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.format == "json":
        print(json.dumps(out, indent=2))
    elif out["rolled_back"]:
        print(f"{args.model}: rolled back from version {out['from']} to {out['to']} ({args.reason})")
    else:
        print(f"{args.model}: not rolled back: {out['reason']}")
    if not out["rolled_back"]:
        return EXIT_FAILED
    _guard_hint(args.model, out["to"], settings, args.as_of)
    return EXIT_OK


def _guard_hint(model: str, version: str, settings, as_of: str | None = None) -> None:
    """Start the guard of the new champion through the Airflow REST API when
    ``RETRAIN_AIRFLOW_API_URL`` is set (:mod:`retrain_lib.tools.airflow_api`); otherwise, or
    when that fails, say how to start it."""
    import datetime as dt

    if not load_model_config(settings.models_dir / f"{model}.yaml", settings.platform).guard_enabled:
        return
    dag_id = f"{model}__guard"
    conf = {"version": str(version), "as_of": as_of or dt.date.today().isoformat()}
    api = AirflowApi.from_env()
    if api is not None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        try:
            run = api.trigger(dag_id, conf, run_id=f"guard__promote_v{version}_{stamp}")
            print(f"guard: started {dag_id} run {run['dag_run_id']} on {api.base_url}", file=sys.stderr)
            return
        except AirflowApiError as exc:
            print(f"guard: could not start it: {exc}", file=sys.stderr)
    print(
        f"guard: start it now with `airflow dags trigger {dag_id} --conf "
        f"""'{{"version": "{version}"}}'` (or from the Airflow UI); until then nothing watches """
        "this version live but the monitor"
        + ("" if api is not None else f" (set {API_URL_ENV} and credentials to start it automatically)"),
        file=sys.stderr,
    )


def cmd_webhook(args) -> int:
    settings = load_settings(args.config_dir)
    secret = (os.environ.get(args.secret_env) or "").strip()
    if not secret:
        print(
            f"error: environment variable {args.secret_env} is empty or unset; set it to the secret the "
            "gateway checks deliveries with (the same value in the gateway's environment)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if not settings.registry_uri.startswith(("http://", "https://")):
        print(
            f"error: the registry {settings.registry_uri} is not an MLflow server: webhooks are delivered by the "
            "server (OSS MLflow 3 with a SQL backend). A gateway on a local SQLite registry sees commits through "
            "its change probe instead",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    hook = ensure_gateway_webhook(settings.registry_uri, args.url, secret, name=args.name)
    print(
        json.dumps(hook)
        if args.format == "json"
        else f"webhook {hook['name']} ({hook['id']}): {', '.join(hook['events'])} -> {hook['url']} ({hook['status']})"
    )
    return EXIT_OK


def register(sub) -> None:
    """Add ``serve``, ``replay``, ``promote``, ``rollback`` and ``webhook`` to the subparsers ``sub`` of the
    ``retrain`` parser."""
    _add_serve(sub)
    _add_replay(sub)
    _add_promote(sub)
    _add_rollback(sub)
    _add_webhook(sub)


def _add_rollback(sub) -> None:
    r = sub.add_parser(
        "rollback",
        help="move the champion back to previous-champion by hand (in the ledger)",
        description="Point models:/<model>@champion back at previous-champion in one compare-and-swap on the "
        "champion now (or --expected-champion), atomic with its rollback ledger entry; the version rolled "
        "back is tagged retrain.rolled_back and previous-champion is removed. The guard of the version rolled "
        "back to is started as for `retrain promote`. Exit 1 when the champion moved meanwhile or there is "
        "no previous-champion.",
    )
    r.add_argument("model", help="registered model name")
    r.add_argument("--reason", required=True, help="why (kept in the ledger)")
    r.add_argument("--as-of", default=None, help="day recorded in the ledger (default: today)")
    r.add_argument("--expected-champion", default=None, help="roll back only if this version still is the champion")
    add_format(r)
    add_config_dir(r)
    r.set_defaults(func=cmd_rollback)


def _add_webhook(sub) -> None:
    w = sub.add_parser(
        "webhook",
        help="make the MLflow server push alias changes to a gateway (an MLflow webhook)",
        description="Create (or update, by name) the MLflow webhook that POSTs model_version_alias.created and "
        ".deleted events, HMAC-signed with the secret in --secret-env, to URL (the gateway's "
        "/v1/registry/events): promotions and rollbacks are then served within a second, the gateway's poll "
        "staying as the fallback. The MLflow server must allow the URL: MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https "
        "and MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true for a gateway inside a private network.",
    )
    w.add_argument("url", help="the gateway's events URL, e.g. http://gateway:8000/v1/registry/events")
    w.add_argument("--name", default="retrain-gateway", help="the webhook's name (default retrain-gateway)")
    w.add_argument(
        "--secret-env",
        default="RETRAIN_WEBHOOK_SECRET",
        help="environment variable holding the signing secret (default RETRAIN_WEBHOOK_SECRET)",
    )
    add_format(w)
    add_config_dir(w)
    w.set_defaults(func=cmd_webhook)


def _add_serve(sub) -> None:
    s = sub.add_parser(
        "serve",
        help="run the serving gateway (champion/challenger routing, prediction log)",
        description="Serve models:/<name>@champion (and @challenger in shadow or canary mode, per the "
        "rollout.* tags of the registered model) over HTTP; log every prediction before answering.",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    s.add_argument("--models", help="comma-separated model names (default: every model config)")
    s.add_argument(
        "--token-env",
        default="RETRAIN_GATEWAY_TOKEN",
        help="environment variable holding the bearer token (unset or empty: no auth)",
    )
    s.add_argument("--require-token", action="store_true", help="refuse to start without a token")
    s.add_argument("--refresh-s", type=_positive, default=2.0, help="registry poll interval (seconds)")
    s.add_argument(
        "--log-url",
        help="prediction log database URL (default: $RETRAIN_PREDICTIONS_URL or <state_dir>/predictions.db)",
    )
    s.add_argument("--no-log", action="store_true", help="do not log predictions (benchmarks only)")
    s.add_argument(
        "--webhook-secret-env",
        default="RETRAIN_WEBHOOK_SECRET",
        help="environment variable holding the secret of the MLflow webhook that pushes alias changes to "
        "/v1/registry/events (unset or empty: polling only; see `retrain webhook`)",
    )
    s.add_argument(
        "--pin",
        action="append",
        type=_pin,
        metavar="MODEL=SOURCE",
        help="serve SOURCE (a version number or a model URI) as MODEL's champion and never follow the "
        "registry for it (the servability gate's probe); repeatable",
    )
    s.add_argument(
        "--max-body-bytes",
        type=int,
        default=1_000_000,
        help="larger request bodies are refused with 413 (default 1000000)",
    )
    add_format(s)
    add_config_dir(s)
    s.set_defaults(func=cmd_serve, own_progress=True)  # a server: its own log


def _add_replay(sub) -> None:
    r = sub.add_parser(
        "replay",
        help="send recorded daily partitions to a gateway at a fixed rate, then their labels",
        description="Read the model's daily partitions under DATA, send each record to the gateway at "
        "RATE requests per second (its id column as entity), then post the labels of the answered "
        "requests (from the labels partitions) after --label-delay-s. Prints a JSON summary. Exit 1 "
        "when any request failed.",
    )
    r.add_argument("--config", required=True, help="model config file")
    r.add_argument("--data", required=True, help="data root holding <data.path>/ and <data.labels_path>/")
    r.add_argument("--rate", type=_positive, required=True, help="requests per second")
    r.add_argument("--days", type=_days, default=None, help="D1..D2 (inclusive; default: every partition)")
    r.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default http://127.0.0.1:8000)")
    r.add_argument(
        "--label-delay-s",
        type=float,
        default=0.0,
        help="seconds between a request's answer and the post of its label (default 0)",
    )
    r.add_argument("--limit", type=int, default=None, help="send at most this many records")
    r.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    r.add_argument(
        "--token-env",
        default="RETRAIN_GATEWAY_TOKEN",
        help="environment variable holding the bearer token to send (default RETRAIN_GATEWAY_TOKEN)",
    )
    r.add_argument(
        "--format", choices=["text", "json"], default="json", help="json (default): one JSON object on stdout; or text"
    )
    r.set_defaults(func=cmd_replay)


def _add_promote(sub) -> None:
    p = sub.add_parser(
        "promote",
        help="make a registered version the champion by hand (no gates; in the ledger)",
        description="Point models:/<model>@champion at VERSION (the old champion becomes "
        "previous-champion), compare-and-swap on the champion now (or --expected-champion), with its "
        "ledger entry. Gates are not run, but a fresh gateway process must load the version from the registry "
        "and answer probe requests first (--skip-serving-check to skip it): use it for an emergency fix or to "
        "bring a known-good version back; the monitor's automatic rollback watches the new champion like any other, and so does the "
        "post-deploy guard once started (the command to start it is printed). Exit 1 when the champion "
        "moved meanwhile or the version could not be served.",
    )
    p.add_argument("model", help="registered model name")
    p.add_argument("version", help="the registered version to make the champion")
    p.add_argument("--reason", required=True, help="why (kept in the ledger)")
    p.add_argument("--as-of", default=None, help="day recorded in the ledger (default: today)")
    p.add_argument("--expected-champion", default=None, help="promote only if this version still is the champion")
    p.add_argument(
        "--skip-serving-check",
        action="store_true",
        help="promote without first serving the version in a fresh gateway process (emergencies only)",
    )
    add_format(p)
    add_config_dir(p)
    p.set_defaults(func=cmd_promote)


def main(argv: list[str] | None = None) -> int:
    """Run the serving commands alone (``python -m retrain_lib.cli.serving_cmds``); the exit code."""
    return run_commands(register, "Serving commands of retrain.", argv)


if __name__ == "__main__":
    sys.exit(main())
