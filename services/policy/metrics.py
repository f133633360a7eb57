"""Prometheus metrics of the policy service (prefix rlhf_policy_), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "rlhf_policy"


class PolicyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.generated_tokens = Counter(f"{PREFIX}_generated_tokens_total", "Completion tokens generated", registry=r)
        self.tokens_per_second = Gauge(
            f"{PREFIX}_tokens_per_second", "Completion tokens per second of the last Generate call", registry=r
        )
        self.generate_batch = Histogram(
            f"{PREFIX}_generate_sequences",
            "Sequences per generate call (prompts x n)",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.model = Info(f"{PREFIX}_model", "The policy version that serves and the generation backend", registry=r)
        self.version_changes = Counter(
            f"{PREFIX}_version_changes_total", "Promotions and rollbacks", ["action"], registry=r
        )
        self.training = Gauge(f"{PREFIX}_training", "1 while a training run is in progress", registry=r)
        self.train_runs = Counter(
            f"{PREFIX}_train_runs_total", "Training runs by method and outcome", ["method", "outcome"], registry=r
        )
        self.train_step_seconds = Histogram(
            f"{PREFIX}_train_step_seconds",
            "Duration of one optimiser step",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160),
        )
        self.train_loss = Gauge(f"{PREFIX}_train_loss", "Last logged training loss", registry=r)
        self.reward_mean = Gauge(f"{PREFIX}_reward_mean", "Mean reward of the last logged step", registry=r)
        self.reward_std = Gauge(f"{PREFIX}_reward_std", "Reward standard deviation of the last logged step", registry=r)
        self.kl = Gauge(f"{PREFIX}_kl", "KL to the reference at the last logged step", registry=r)
