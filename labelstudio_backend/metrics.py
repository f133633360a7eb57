"""Prometheus metrics of the Label Studio backend (prefix rlhf_backend_), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "rlhf_backend"


class BackendMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.predictions = Counter(f"{PREFIX}_predictions_total", "Task predictions served", registry=r)
        self.predict_latency = Histogram(
            f"{PREFIX}_predict_duration_seconds",
            "Latency of /predict requests",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100),
        )
        self.webhooks = Counter(
            f"{PREFIX}_webhooks_total", "Webhook deliveries by action and outcome", ["action", "outcome"], registry=r
        )
        self.rejected_results = Counter(
            f"{PREFIX}_rejected_results_total", "Annotation results that did not fit their task", registry=r
        )
        self.preferences_stored = Gauge(f"{PREFIX}_preferences_stored", "Rankings in the preference store", registry=r)
        self.candidates_generated = Counter(
            f"{PREFIX}_candidates_generated_total", "Tasks that got candidates from the policy service", registry=r
        )
        self.agreement = Gauge(
            f"{PREFIX}_annotator_agreement", "Pairwise inter-annotator agreement over shared pairs", registry=r
        )
