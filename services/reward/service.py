"""The reward service's work in plain Python: versions, scoring through the batcher, training.

The gRPC servicer and the HTTP endpoint only translate to and from this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from services.core.config_checks import check_config
from services.core.errors import DeadlineError, InvalidRequestError, PreconditionError
from services.core.rankings import Ranking, training_data_hash
from services.models.loading import load_reward_model, resolve_model
from services.models.registry import ModelRegistry, VersionInfo
from services.reward.batching import ADAPTIVE, BatchStats, DynamicBatcher
from services.reward.metrics import RewardMetrics
from services.reward.ranking import RankResult, rank_candidates
from services.reward.replicas import ReplicaBoard, ReplicaStatus, default_replica_id
from services.reward.scorer import RewardScorer, ScoreItem, member_mean, member_spread
from services.reward.train_config import RewardTrainConfig
from services.reward.trainer import TrainOutcome, TrainProgress, prepare_split, train_reward_model

log = logging.getLogger(__name__)

VERSION_PREFIX = "reward"
EVALUATION_SCORERS = 2  # versions other than the active one kept loaded for Score/Rank(version=...)
FOLLOW_RETRY_S = 10.0  # after a version fails to load, wait this long before trying it again


class ReplicasBehindError(DeadlineError):
    """The new version is active, but some live replica did not announce it in time."""


@dataclass
class RewardServiceConfig:
    registry_dir: Path
    base_model: str = "minilm"
    max_batch: int = 32
    max_wait_ms: float = 5.0
    batch_wait: str = ADAPTIVE  # or FIXED: how long a batch is held open (see batching.py)
    max_queue: int = 1024
    max_items_per_request: int = 256
    max_text_chars: int = 16384  # prompt + response, per item
    max_length: int = 512  # tokens the model sees per item (longer inputs are truncated)
    bucket_tokens: int = 512  # padded tokens per forward chunk; raise it on a GPU
    trust_remote_code: bool = False
    allow_pickle: bool = False
    # Replicas sharing the registry (see replicas.py): how often each checks the active pointer and
    # announces what it serves, when a silent one counts as gone, how long a Promote waits for the rest.
    replica_id: str = ""  # default: <hostname>-<pid>
    follow_interval_s: float = 0.5
    replica_stale_s: float = 5.0
    promote_sync_timeout_s: float = 120.0

    def validate(self) -> None:
        """Refuse replica settings that would spin, never count a replica live, or never wait."""
        check_config(
            self,
            {
                "follow_interval_s": self.follow_interval_s > 0,
                "replica_stale_s": self.replica_stale_s > self.follow_interval_s,
                "promote_sync_timeout_s": self.promote_sync_timeout_s >= 0,
            },
        )


def spreads_of(members: Sequence[tuple[float, ...]]) -> list[float]:
    """Each item's spread over an ensemble's members; empty for a single model (nothing to spread)."""
    return [member_spread(m) for m in members] if members and len(members[0]) > 1 else []


class RewardService:
    def __init__(self, config: RewardServiceConfig, metrics: RewardMetrics | None = None):
        config.validate()
        self.config = config
        self.metrics = metrics or RewardMetrics()
        self.registry = ModelRegistry(config.registry_dir, VERSION_PREFIX)
        self.batcher: DynamicBatcher[tuple[RewardScorer, ScoreItem], tuple[float, ...]] = DynamicBatcher(
            self._run_batch,
            max_batch=config.max_batch,
            max_wait_s=config.max_wait_ms / 1000,
            max_queue=config.max_queue,
            wait=config.batch_wait,
            on_batch=self._record_batch,
        )
        self.metrics.queue_depth.set_function(lambda: self.batcher.depth)
        self._scorer: RewardScorer | None = None
        self._other_scorers: OrderedDict[str, RewardScorer] = OrderedDict()  # least recently used first
        self._training_lock = asyncio.Lock()
        self._swap_lock = asyncio.Lock()
        self.replica_id = config.replica_id or default_replica_id()
        self.replicas = ReplicaBoard(config.registry_dir, self.replica_id, config.replica_stale_s)
        self._follower: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(
            self.registry.ensure_base, {"base_model": str(self.config.base_model)}, self._save_backbone
        )
        active = self.registry.active
        self._scorer = await asyncio.to_thread(self._load_scorer, active)
        self.metrics.model.info({"version": active, "architecture": self.architecture})
        # Announce first, then look again: a Promote that wrote the pointer before this announcement
        # was seen is caught here, and one after it waits for this replica (see replicas.py).
        self.replicas.announce(active)
        await self._follow_active()
        self._follower = asyncio.get_running_loop().create_task(self._follow(), name="follow-active-version")
        self.batcher.start()
        log.info(
            "reward model loaded",
            extra={"version": self.scorer.version, "architecture": self.architecture, "replica": self.replica_id},
        )

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        self.replicas.leave()
        await self.batcher.stop()

    def _save_backbone(self, staging: Path) -> None:
        """The backbone with a new scoring head, seeded so every fresh registry starts from the same weights."""
        source = resolve_model(self.config.base_model)
        torch.manual_seed(0)
        model, tokenizer = load_reward_model(
            source, members=1, trust_remote_code=self.config.trust_remote_code, allow_pickle=self.config.allow_pickle
        )
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    def _load_scorer(self, version: str) -> RewardScorer:
        info = self.registry.get(version)
        model, tokenizer = load_reward_model(info.path, trust_remote_code=self.config.trust_remote_code)
        if torch.cuda.is_available():
            model = model.to("cuda")
        return RewardScorer(model, tokenizer, version, self.config.max_length, self.config.bucket_tokens)

    @property
    def scorer(self) -> RewardScorer:
        if self._scorer is None:
            raise PreconditionError("the reward service has not started")
        return self._scorer

    @property
    def architecture(self) -> str:
        return self.scorer.model.config.model_type if self._scorer else ""

    @property
    def base_version(self) -> str:
        return self.registry.list()[0].id

    @property
    def training(self) -> bool:
        return self._training_lock.locked()

    # -- scoring ---------------------------------------------------------------
    def _run_batch(self, batch: Sequence[tuple[RewardScorer, ScoreItem]]) -> list[tuple[float, ...]]:
        # Items carry the scorer that was active when their request arrived, so a
        # promotion mid-request never mixes versions; most batches have one scorer.
        results: list[tuple[float, ...]] = [()] * len(batch)
        by_scorer: dict[int, list[int]] = {}
        for index, (scorer, _) in enumerate(batch):
            by_scorer.setdefault(id(scorer), []).append(index)
        for indices in by_scorer.values():
            scorer = batch[indices[0]][0]
            for index, value in zip(indices, scorer.score_members([batch[i][1] for i in indices]), strict=True):
                results[index] = value
        self.metrics.items_scored.inc(len(batch))
        return results

    def _record_batch(self, stats: BatchStats) -> None:
        if stats.size:
            self.metrics.batch_size.observe(stats.size)
        self.metrics.queue_wait.observe(stats.oldest_wait_s)
        if stats.dropped_deadline:
            self.metrics.items_dropped.labels("deadline").inc(stats.dropped_deadline)
        if stats.dropped_cancelled:
            self.metrics.items_dropped.labels("cancelled").inc(stats.dropped_cancelled)

    def validate_items(self, items: Sequence[ScoreItem], what: str = "items") -> None:
        limit = self.config.max_items_per_request
        if not items:
            raise InvalidRequestError(f"no {what} to score")
        if len(items) > limit:
            raise InvalidRequestError(f"{len(items)} {what} exceed the limit of {limit} per request")
        for index, item in enumerate(items):
            if not item.response.strip():
                raise InvalidRequestError(f"{what}[{index}] has an empty response")
            size = len(item.prompt) + len(item.response)
            if size > self.config.max_text_chars:
                raise InvalidRequestError(
                    f"{what}[{index}] has {size} characters; the limit is {self.config.max_text_chars} "
                    "(prompt + response)"
                )

    async def scorer_of(self, version: str = "") -> RewardScorer:
        """The active scorer, or (for evaluation) another version's, loaded on first use and cached."""
        active = self.scorer
        if not version or version == active.version:
            return active
        scorer = self._other_scorers.pop(version, None)
        if scorer is None:
            self.registry.get(version)  # VersionNotFoundError (NOT_FOUND) before any loading
            scorer = await asyncio.to_thread(self._load_scorer, version)
        self._other_scorers[version] = scorer
        while len(self._other_scorers) > EVALUATION_SCORERS:
            self._other_scorers.popitem(last=False)
        return scorer

    async def score(
        self, items: Sequence[ScoreItem], timeout_s: float | None = None, version: str = ""
    ) -> tuple[list[float], str]:
        """Scores (an ensemble's mean) and the version that produced them; raises QueueFullError, DeadlineError."""
        members, version = await self.score_members(items, timeout_s, version)
        return [member_mean(m) for m in members], version

    async def score_members(
        self, items: Sequence[ScoreItem], timeout_s: float | None = None, version: str = ""
    ) -> tuple[list[tuple[float, ...]], str]:
        """Every member's score of each item, through the batcher, and the version that produced them."""
        self.validate_items(items)
        scorer = await self.scorer_of(version)
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        members = await self.batcher.submit([(scorer, item) for item in items], deadline)
        return members, scorer.version

    async def rank(
        self, prompt: str, candidates: Sequence[str], timeout_s: float | None = None, version: str = ""
    ) -> RankResult:
        if len(candidates) < 2:
            raise InvalidRequestError(f"rank needs at least 2 candidates, got {len(candidates)}")
        members, version = await self.score_members([ScoreItem(prompt, c) for c in candidates], timeout_s, version)
        return rank_candidates([member_mean(m) for m in members], version, spreads_of(members))

    # -- versions --------------------------------------------------------------
    async def promote(self, version: str) -> tuple[str, str]:
        """Load `version`, point the registry and new requests at it, and wait until every replica serves it.

        Requests that arrived before finish on the old version; no response mixes two.
        """
        async with self._swap_lock:
            self.registry.get(version)
            scorer = await asyncio.to_thread(self._load_scorer, version)
            active, previous = self.registry.promote(version)
            self._swap_in(scorer, "promote")
        await self._await_replicas(active)
        return active, previous

    async def rollback(self) -> tuple[str, str]:
        async with self._swap_lock:
            state_before = self.registry.active
            active, previous = self.registry.rollback()
            try:
                scorer = await asyncio.to_thread(self._load_scorer, active)
            except BaseException:
                self.registry.promote(state_before)  # keep the pointer on the model that still serves
                raise
            self._swap_in(scorer, "rollback")
        await self._await_replicas(active)
        return active, previous

    async def _follow(self) -> None:
        """Announce what this replica serves and take up a version another replica made active."""
        while True:
            await asyncio.sleep(self.config.follow_interval_s)
            try:
                await asyncio.to_thread(self.replicas.announce, self.scorer.version)
                active = await self._follow_active()
                self._count_replicas(await asyncio.to_thread(self.replicas.live), active)
            except Exception:
                # Keep serving what is loaded (a Promote that waits for this replica will say so)
                # and try again later rather than reloading a broken version twice a second.
                log.exception("could not follow the active version", extra={"active": self.registry.active})
                await asyncio.sleep(FOLLOW_RETRY_S)

    async def _follow_active(self) -> str:
        """Serve the registry's active version if another replica changed it; returns that version."""
        active = self.registry.active
        if active == self.scorer.version:
            return active
        async with self._swap_lock:
            active = self.registry.active
            if active == self.scorer.version:
                return active  # a Promote on this replica got here first
            scorer = await asyncio.to_thread(self._load_scorer, active)
            self._swap_in(scorer, "follow")
        self.replicas.announce(active)
        return active

    async def _await_replicas(self, version: str) -> None:
        """Return once every live replica announces `version`; raise ReplicasBehindError after the timeout."""
        self.replicas.announce(version)
        deadline = time.monotonic() + self.config.promote_sync_timeout_s
        while True:
            live = await asyncio.to_thread(self.replicas.live)
            behind = self._count_replicas(live, version)
            if not behind or self.registry.active != version:  # all there, or a later change superseded it
                return
            if time.monotonic() > deadline:
                raise ReplicasBehindError(
                    f"{version} is active, but replicas {', '.join(behind)} did not serve it within "
                    f"{self.config.promote_sync_timeout_s:.0f}s; they keep trying (see their logs)"
                )
            await asyncio.sleep(min(0.05, self.config.follow_interval_s))

    def _count_replicas(self, live: Sequence[ReplicaStatus], active: str) -> list[str]:
        """The live replicas not serving `active`, also set as gauges."""
        behind = [r.id for r in live if r.version != active]
        self.metrics.replicas.set(len(live))
        self.metrics.replicas_behind.set(len(behind))
        return behind

    def _swap_in(self, scorer: RewardScorer, action: str) -> None:
        self._scorer = scorer
        self._other_scorers.pop(scorer.version, None)  # the active one is never kept twice
        self.metrics.model.info({"version": scorer.version, "architecture": self.architecture})
        self.metrics.version_changes.labels(action).inc()
        log.info("active version changed", extra={"action": action, "version": scorer.version})

    def versions(self) -> tuple[list[VersionInfo], str]:
        return self.registry.list(), self.registry.active

    # -- training --------------------------------------------------------------
    async def train(
        self,
        rankings: Sequence[Ranking],
        config: RewardTrainConfig,
        *,
        on_progress: Callable[[TrainProgress], None],
        on_evaluation: Callable[[TrainOutcome], None],
        stop: threading.Event,
        heldout_rankings: Sequence[Ranking] = (),
    ) -> VersionInfo:
        """Train, evaluate and register a new version (promoted if asked); one run at a time.

        `heldout_rankings`, when given, are the comparisons to evaluate on
        instead of a split of `rankings` (see TrainRequest in reward.proto).
        """
        config.validate()
        for ranking in [*rankings, *heldout_rankings]:
            ranking.validate()
        async with self._one_training_run():
            init = self.registry.get(config.init_version or self.base_version)
            split = prepare_split(rankings, config, heldout_rankings)
            self.metrics.training.set(1)
            loop = asyncio.get_running_loop()

            def progress_from_thread(p: TrainProgress) -> None:
                self.metrics.train_steps.inc()
                self.metrics.train_loss.set(p.loss)
                if not math.isnan(p.accuracy):
                    self.metrics.train_accuracy.set(p.accuracy)
                loop.call_soon_threadsafe(on_progress, p)

            staging = self.registry.staging_dir()
            started = time.monotonic()
            log.info(
                "training started",
                extra={"init": init.id, "train_pairs": len(split.train), "heldout_pairs": len(split.heldout)},
            )
            try:
                worker = asyncio.ensure_future(
                    asyncio.to_thread(
                        train_reward_model,
                        init.path,
                        split,
                        config,
                        staging,
                        on_progress=progress_from_thread,
                        should_stop=stop.is_set,
                        trust_remote_code=self.config.trust_remote_code,
                    )
                )
                try:
                    outcome = await asyncio.shield(worker)
                except asyncio.CancelledError:
                    # The thread cannot be killed: ask it to stop and wait, so the
                    # staging directory is not removed while it still writes there.
                    stop.set()
                    await asyncio.wait([worker])
                    raise
                on_evaluation(outcome)
                version = self.registry.commit(
                    staging,
                    {
                        "format": "full",  # a merged checkpoint (LoRA runs are merged before saving)
                        "parent": init.id,
                        "base_model": str(self.config.base_model),
                        "data_hash": training_data_hash(rankings, heldout_rankings),
                        "rankings": len(rankings),
                        "heldout_rankings": len(heldout_rankings),
                        "config": config.as_dict(),
                        "metrics": {
                            "heldout_accuracy": outcome.heldout_accuracy,
                            "heldout_pairs": outcome.heldout_pairs,
                            "train_pairs": outcome.train_pairs,
                            "final_loss": outcome.final_loss,
                            "steps": outcome.steps,
                            "train_seconds": round(time.monotonic() - started, 2),
                        },
                    },
                )
            except BaseException as error:
                self.registry.discard(staging)
                outcome_label = "cancelled" if stop.is_set() else "failed"
                self.metrics.train_runs.labels(outcome_label).inc()
                log.warning("training ended without a version", extra={"outcome": outcome_label, "error": repr(error)})
                raise
            finally:
                self.metrics.training.set(0)
            self.metrics.train_runs.labels("completed").inc()
            self.metrics.heldout_accuracy.set(outcome.heldout_accuracy)
            log.info(
                "training finished",
                extra={"version": version.id, "heldout_accuracy": outcome.heldout_accuracy},
            )
        if config.promote:
            await self.promote(version.id)
            version = self.registry.get(version.id)
        return version

    @contextlib.asynccontextmanager
    async def _one_training_run(self) -> AsyncIterator[None]:
        """One run in this process (the asyncio lock) and on the registry, whichever replica the call reached."""
        if self._training_lock.locked():
            raise PreconditionError("a training run is already in progress; wait for it or cancel it")
        async with self._training_lock:
            with self.registry.exclusive_training(self.replica_id):
                yield
