"""Prometheus metrics of the reward service (prefix rlhf_reward_), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

PREFIX = "rlhf_reward"


class RewardMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Items per model forward batch",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Items waiting in the batcher queue", registry=r)
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds",
            "Wait of the oldest item of each batch",
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
        )
        self.items_scored = Counter(f"{PREFIX}_items_scored_total", "Items scored", registry=r)
        self.items_dropped = Counter(
            f"{PREFIX}_items_dropped_total", "Items dropped before their batch ran", ["reason"], registry=r
        )
        self.model = Info(f"{PREFIX}_model", "The reward model version that serves", registry=r)
        self.version_changes = Counter(
            f"{PREFIX}_version_changes_total",
            "Changes of the version this replica serves: promote, rollback, or follow (another replica's change)",
            ["action"],
            registry=r,
        )
        self.replicas = Gauge(
            f"{PREFIX}_replicas", "Live replicas on this replica's registry, itself included", registry=r
        )
        self.replicas_behind = Gauge(
            f"{PREFIX}_replicas_behind",
            "Live replicas on this replica's registry that do not serve its active version",
            registry=r,
        )
        self.training = Gauge(f"{PREFIX}_training", "1 while a training run is in progress", registry=r)
        self.train_runs = Counter(f"{PREFIX}_train_runs_total", "Training runs by outcome", ["outcome"], registry=r)
        self.train_steps = Counter(f"{PREFIX}_train_steps_total", "Optimiser steps taken", registry=r)
        self.train_loss = Gauge(f"{PREFIX}_train_loss", "Last logged training loss", registry=r)
        self.train_accuracy = Gauge(f"{PREFIX}_train_accuracy", "Last logged training pair accuracy", registry=r)
        self.heldout_accuracy = Gauge(
            f"{PREFIX}_heldout_accuracy", "Held-out pair accuracy of the last trained version", registry=r
        )
