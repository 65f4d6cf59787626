"""The gateway's own metrics (requests by model, arm and status; latency histograms; shadow
drops and failures) and their Prometheus text exposition (``GET /metrics``)."""

import threading

from retrain_lib.serving.deployment import ModelSlot

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Counters and histograms of one gateway (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.hist: dict[str, list[int]] = {}
        self.hist_sum: dict[str, float] = {}
        self.shadow_dropped = 0
        self.shadow_failed = 0
        self.pushed: dict[str, int] = {}

    def request(self, model: str, arm: str, status: int, n: int = 1) -> None:
        with self._lock:
            key = (model, arm, str(status))
            self.requests[key] = self.requests.get(key, 0) + n

    def latency(self, model: str, seconds: float) -> None:
        with self._lock:
            counts = self.hist.setdefault(model, [0] * (len(LATENCY_BUCKETS) + 1))
            for i, b in enumerate(LATENCY_BUCKETS):
                if seconds <= b:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            self.hist_sum[model] = self.hist_sum.get(model, 0.0) + seconds

    def count_shadow_dropped(self) -> None:
        """A shadow scoring was dropped (its queue was full)."""
        with self._lock:
            self.shadow_dropped += 1

    def count_pushed(self, model: str) -> None:
        """A registry change of ``model`` was pushed (a verified webhook delivery)."""
        with self._lock:
            self.pushed[model] = self.pushed.get(model, 0) + 1

    def count_shadow_failed(self) -> None:
        """A shadow scoring failed (the challenger raised)."""
        with self._lock:
            self.shadow_failed += 1

    def render(self, slots: dict[str, ModelSlot], log_depth: int, shadow_depth: int, journaled: int) -> str:
        """Everything in the Prometheus text format, with the queue depths given and the
        loaded versions and canary share of ``slots``."""

        def esc(v: str) -> str:
            return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        out = [
            "# HELP retrain_gateway_requests_total Predictions answered, by model, arm and HTTP status.",
            "# TYPE retrain_gateway_requests_total counter",
        ]
        with self._lock:
            for (m, arm, status), n in sorted(self.requests.items()):
                out.append(f'retrain_gateway_requests_total{{model="{esc(m)}",arm="{esc(arm)}",status="{status}"}} {n}')
            out += [
                "# HELP retrain_gateway_request_duration_seconds Predict request latency (receive to answer).",
                "# TYPE retrain_gateway_request_duration_seconds histogram",
            ]
            for m, counts in sorted(self.hist.items()):
                cum = 0
                for b, c in zip((*LATENCY_BUCKETS, "+Inf"), counts):
                    cum += c
                    out.append(f'retrain_gateway_request_duration_seconds_bucket{{model="{esc(m)}",le="{b}"}} {cum}')
                out.append(f'retrain_gateway_request_duration_seconds_sum{{model="{esc(m)}"}} {self.hist_sum[m]:.6f}')
                out.append(f'retrain_gateway_request_duration_seconds_count{{model="{esc(m)}"}} {cum}')
            dropped, failed = self.shadow_dropped, self.shadow_failed
            out += [
                "# HELP retrain_gateway_registry_pushes_total Verified registry change deliveries (MLflow webhooks).",
                "# TYPE retrain_gateway_registry_pushes_total counter",
            ]
            for m, n in sorted(self.pushed.items()):
                out.append(f'retrain_gateway_registry_pushes_total{{model="{esc(m)}"}} {n}')
        out += [
            "# HELP retrain_gateway_log_queue_depth Prediction-log items waiting for the writer.",
            "# TYPE retrain_gateway_log_queue_depth gauge",
            f"retrain_gateway_log_queue_depth {log_depth}",
            "# HELP retrain_gateway_log_journaled_rows Predictions in the journal, not yet in the database.",
            "# TYPE retrain_gateway_log_journaled_rows gauge",
            f"retrain_gateway_log_journaled_rows {journaled}",
            "# HELP retrain_gateway_shadow_queue_depth Shadow scorings waiting.",
            "# TYPE retrain_gateway_shadow_queue_depth gauge",
            f"retrain_gateway_shadow_queue_depth {shadow_depth}",
            "# HELP retrain_gateway_shadow_dropped_total Shadow scorings dropped (queue full) or failed.",
            "# TYPE retrain_gateway_shadow_dropped_total counter",
            f'retrain_gateway_shadow_dropped_total{{reason="queue_full"}} {dropped}',
            f'retrain_gateway_shadow_dropped_total{{reason="error"}} {failed}',
            "# HELP retrain_gateway_model_version Loaded model version per alias.",
            "# TYPE retrain_gateway_model_version gauge",
        ]
        for name, slot in sorted(slots.items()):
            d = slot.deployment
            for alias, lm in (("champion", d.champion), ("challenger", d.challenger)):
                if lm is not None and lm.version.isdigit():
                    out.append(f'retrain_gateway_model_version{{model="{esc(name)}",alias="{alias}"}} {lm.version}')
        out += [
            "# HELP retrain_gateway_canary_percent Share of requests routed to the challenger.",
            "# TYPE retrain_gateway_canary_percent gauge",
        ]
        for name, slot in sorted(slots.items()):
            d = slot.deployment
            pct = d.rollout.canary_percent if d.rollout.mode == "canary" else 0.0
            out.append(f'retrain_gateway_canary_percent{{model="{esc(name)}",mode="{d.rollout.mode}"}} {pct}')
        return "\n".join(out) + "\n"
