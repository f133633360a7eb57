"""Prometheus metrics of the loop (prefix rlhf_loop_), served by the controller process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, disable_created_metrics, start_http_server

from services.controller.loop_state import STAGES

PREFIX = "rlhf_loop"
disable_created_metrics()  # `_created` series are noise to Prometheus


class LoopMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.iteration = Gauge(f"{PREFIX}_iteration", "Iteration in progress (or last finished)", registry=r)
        self.stage = Enum(f"{PREFIX}_stage", "Stage of the current iteration", states=list(STAGES), registry=r)
        self.rankings = Gauge(f"{PREFIX}_rankings_collected", "Rankings collected in the current iteration", registry=r)
        self.agreement = Gauge(f"{PREFIX}_annotator_agreement", "Inter-annotator agreement this iteration", registry=r)
        self.rm_accuracy = Gauge(
            f"{PREFIX}_reward_model_accuracy", "Held-out accuracy of the new reward model", registry=r
        )
        self.rm_active_accuracy = Gauge(
            f"{PREFIX}_reward_model_active_accuracy", "The active reward model's accuracy on the same pairs", registry=r
        )
        self.heldout_agreement = Gauge(
            f"{PREFIX}_heldout_agreement", "The annotators' agreement on the reward gate's held-out pairs", registry=r
        )
        self.win_rate = Gauge(f"{PREFIX}_policy_win_rate", "New policy's win-rate over the active one", registry=r)
        self.kl = Gauge(f"{PREFIX}_kl", "KL of the new policy to the reference", registry=r)
        self.gold = Gauge(f"{PREFIX}_gold_win_rate", "Gold-score win-rate of the new policy (simulated)", registry=r)
        self.decisions = Counter(f"{PREFIX}_decisions_total", "Promotions and rollbacks", ["decision"], registry=r)
        self.service_retries = Counter(
            f"{PREFIX}_service_retries_total", "Stages retried because a service was unavailable", registry=r
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def record(self, number: int, stage: str, record: dict) -> None:
        self.iteration.set(number)
        self.stage.state(stage)
        for gauge, key in (
            (self.rankings, "rankings"),
            (self.agreement, "agreement"),
            (self.rm_accuracy, "rm_accuracy"),
            (self.rm_active_accuracy, "rm_baseline_accuracy"),
            (self.heldout_agreement, "rm_agreement"),
            (self.win_rate, "win_rate"),
            (self.kl, "kl"),
            (self.gold, "gold_win_rate"),
        ):
            if isinstance(record.get(key), int | float):
                gauge.set(record[key])
