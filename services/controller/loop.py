"""The loop object: `RlhfLoop(config).setup()`, `.execute()`, `.run_iteration(n)`.

One iteration: select prompts (where the reward model is least sure) -> tasks
in Label Studio -> rankings (people, or simulated annotators) -> sync the
preference store -> train the reward model (promoted if it passes its gate)
-> train the policy against it -> evaluate the new policy against the active
one -> promote or keep the active one. Each stage records its result in the
loop state before the next starts; a restarted loop resumes at the first
stage without a result.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import httpx
import requests
from sqlalchemy.exc import OperationalError

from labelstudio_backend.instructions import DEFAULT_INSTRUCTIONS
from labelstudio_backend.labelstudio_server import default_data_dir, labelstudio_credentials
from labelstudio_backend.preference_store import PreferenceStore, StoredPreference, pairwise_agreement
from labelstudio_backend.project_setup import find_or_create_project, labelstudio_client, sdk_field
from labelstudio_backend.sync import sync_project
from labelstudio_backend.templates import TEMPLATES, candidate_data
from services.controller.candidates import mixed_candidates, provenance
from services.controller.gates import heldout_figures, policy_gate, reward_gate
from services.controller.human_evaluation import (
    EVALUATION_TEMPLATE,
    evaluation_project_title,
    evaluation_tasks,
    judged_tasks,
    judges_agreement,
    task_key,
)
from services.controller.loop_config import LoopConfig
from services.controller.loop_state import STAGES, LoopState
from services.controller.metrics import LoopMetrics
from services.controller.progress import LoopProgress
from services.controller.prompt_selection import mean_spread, order_uncertainty, select_prompts
from services.controller.report import build_report, sample_versions
from services.controller.report_render import write_report
from services.controller.report_reward_models import gold_comparisons, policies_by_serving_model, reward_models_on
from services.controller.reward_evaluation import heldout_split, heldout_tallies, score_pairs
from services.core.env import AUTH_TOKEN_ENV
from services.core.errors import PreconditionError
from services.core.loader import load_function
from services.core.prompts_file import read_prompts
from services.core.rankings import GoldScorer, PreferencePair, training_data_hash
from services.core.win_rate import win
from services.policy.client import PolicyClient
from services.policy.training.config import PolicyTrainConfig
from services.reward.client import RewardClient

T = TypeVar("T")

# The report's conservative score when training used none: mean - 1 x the ensemble's spread.
REPORT_CONSERVATIVE_LAMBDA = 1.0
KL_STOP_SHARE = 0.8  # online policy training stops at this share of the gate's KL budget


def policy_train_settings(config: LoopConfig) -> dict:
    """The configured policy training settings; an online run stops early at 80% of the gate's KL budget.

    The margin covers the gap between the training-time KL estimate (few
    samples, a step behind) and Evaluate's on the held-out prompts, so a run
    that stops lands inside the budget instead of being rolled back just over
    it. `target_kl = 0` in policy_train switches the stop off.
    """
    train = dict(config.policy_train)
    beta = train.get("beta", PolicyTrainConfig.beta)
    if config.policy_method != "dpo" and beta > 0 and math.isfinite(config.gates.max_kl):
        train.setdefault("target_kl", KL_STOP_SHARE * config.gates.max_kl)
    return train


def _key(prompt: str) -> str:
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


class RlhfLoop:
    def __init__(self, config: LoopConfig, progress: LoopProgress | None = None):
        config.validate()
        self.config = config
        self.display = progress or LoopProgress()
        self.progress = self.display.message
        self.state = LoopState(config.state_url)
        self.store = PreferenceStore(config.store_url)
        self._gold: GoldScorer | None = None
        if config.prompts_file:
            prompts = read_prompts(config.prompts_file)
        else:  # validate() allows this only in a simulated run
            from services.sim.prompts import builtin_prompts

            prompts = builtin_prompts()
        self.heldout, self.pool = prompts[: config.heldout_prompts], prompts[config.heldout_prompts :]
        self.labelstudio_url, self.labelstudio_token = labelstudio_credentials(
            config.labelstudio_url, config.labelstudio_data_dir
        )
        self.token = os.environ.get(AUTH_TOKEN_ENV) or None  # the services' bearer token, when they require one
        self.project_id: int | None = None
        self.metrics = LoopMetrics()
        if config.metrics_port:
            self.metrics.serve(config.metrics_port, config.metrics_host)

    # -- the public API --------------------------------------------------------
    def setup(self) -> dict:
        """Check the services and Label Studio; create the project when it is missing (waiting while one is down)."""
        return self._retrying("setup", self._setup)

    def _setup(self) -> dict:
        with self._reward_client() as reward, self._policy_client() as policy:
            reward.wait_ready(120)
            policy.wait_ready(600)
            versions = {"reward": reward.info().active_version, "policy": policy.info().active_version}
        # A project the loop makes shows the instructions and opens tasks in their shuffled order: Label
        # Studio's default would show predictions (`project init --pre-rank` sets a share for a project).
        project, _ = find_or_create_project(
            self._labelstudio(), self.config.project_title, TEMPLATES[self.config.template].label_config,
            show_collab_predictions=False, expert_instruction=DEFAULT_INSTRUCTIONS, show_instruction=True,
        )  # fmt: skip
        self.project_id = project.id
        return {"project_id": project.id, "active": versions}

    def execute(self) -> list[dict]:
        """Run (or resume) the configured iterations; returns every iteration's record."""
        if self.project_id is None:
            self.setup()
        for number in range(1, self.config.iterations + 1):
            self.run_iteration(number)
        return self.state.history()

    def watch(self, every_s: float | None, poll_s: float = 5.0, stop: Callable[[], bool] = lambda: False) -> None:
        """Run one more iteration whenever the backend records START_TRAINING, or every `every_s` seconds."""
        if self.project_id is None:
            self.setup()
        last = time.monotonic()
        while not stop():
            requests = self.store.pending_training_requests()
            due = every_s is not None and time.monotonic() - last >= every_s
            if requests or due:
                history = self.state.history()
                unfinished = [r["iteration"] for r in history if r["stage"] != "done"]
                number = unfinished[0] if unfinished else len(history) + 1
                self.progress(f"iteration {number}: started by {'START_TRAINING' if requests else 'the schedule'}")
                self.run_iteration(number)
                self.store.consume_training_requests(requests)
                last = time.monotonic()
            time.sleep(poll_s)

    def report(self, out: Path, samples: int = 4, wall_time_s: float | None = None) -> dict:
        """Judge the initial, every iteration's and the final policy by the gold scorer; write the report files.

        Every round's reward model is scored on one fixed set of gold-ordered pairs of those answers too.
        """
        history = self.state.history()
        with self._policy_client() as policy:
            listing = policy.list_versions()
        initial, final = listing.versions[0].id, listing.active
        versions = [initial, *(r["policy_version"] for r in history if r["stage"] == "done" and r["policy_version"]),
                    final]  # fmt: skip
        self.display.message(f"report: {samples} samples of {len(self.heldout)} held-out prompts from {versions}")
        with self._policy_client(3600) as policy:
            drawn = sample_versions(
                policy, versions, self.heldout, self.gold, samples=samples, seed=self.config.eval_seed,
                max_new_tokens=self.config.max_new_tokens,
            )  # fmt: skip
        with self._reward_client(3600) as reward:
            base = reward.list_versions().versions[0].id
            rounds = [r["reward_version"] for r in history if r["stage"] == "done" and r.get("reward_version")]
            comparisons = gold_comparisons(drawn, self.heldout)
            self.display.message(f"report: {len(rounds) + 1} reward models on {sum(map(len, comparisons))} gold pairs")
            reward_models = reward_models_on(reward, [base, *rounds], comparisons, seed=self.config.seed)
            lam = self.config.policy_train.get("conservative_lambda") or REPORT_CONSERVATIVE_LAMBDA
            policies = policies_by_serving_model(reward, drawn, self.heldout, lam)
        if wall_time_s is None:  # the time the stages took, over every run of the loop
            wall_time_s = sum(sum(r.get("seconds", {}).values()) for r in history)
        result = build_report(
            history, drawn, initial, final, wall_time_s=wall_time_s, seed=self.config.seed, reward_models=reward_models,
            policies=policies, conservative_lambda=lam,
        )  # fmt: skip
        write_report(result, Path(out))
        return result

    @property
    def gold(self) -> GoldScorer:
        """The gold scorer, loaded on first use: only simulated annotators and the report judge by it."""
        if self._gold is None:
            self._gold = load_function(self.config.gold, "gold scorer")
        return self._gold

    def run_iteration(self, number: int) -> dict:
        stage, record = self.state.load(number)
        for name in STAGES[STAGES.index(stage) : -1]:
            self.display.stage(number, name)
            self.metrics.record(number, name, record)
            started = time.monotonic()
            stage = functools.partial(getattr(self, f"_{name}"), number, record)
            record |= self._retrying(f"iteration {number}: {name}", stage)
            record.setdefault("seconds", {})[name] = round(time.monotonic() - started, 2)
            save = functools.partial(self.state.save, number, STAGES[STAGES.index(name) + 1], record)
            self._retrying(f"iteration {number}: save", save)
            if name == "decide":
                self.metrics.decisions.labels(record["decision"]).inc()
        self.metrics.record(number, "done", record)
        return record

    def _retrying(self, what: str, work: Callable[[], T]) -> T:
        """Run `work`; while a service or the database is unavailable, report it and retry with backoff."""
        delay, deadline = 2.0, time.monotonic() + self.config.service_retry_s
        while True:
            try:
                return work()
            except (grpc.RpcError, httpx.TransportError, requests.ConnectionError, OperationalError) as error:
                # Label Studio unreachable (httpx under its SDK, requests for signups) counts as unavailable too,
                # and so does the database (a restarting PostgreSQL; the pool reconnects on the next try).
                unavailable = not isinstance(error, grpc.RpcError) or error.code() == grpc.StatusCode.UNAVAILABLE
                if not unavailable or time.monotonic() > deadline:
                    raise
                self.metrics.service_retries.inc()
                reason = (error.details() if isinstance(error, grpc.RpcError)
                          else f"database: {error.orig}" if isinstance(error, OperationalError)
                          else f"Label Studio: {error}")  # fmt: skip
                self.progress(f"{what}: service unavailable ({reason}); retry in {delay:.0f}s")
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    # -- stages ----------------------------------------------------------------
    def _reward_client(self, timeout_s: float = 30.0) -> RewardClient:
        return RewardClient(self.config.reward_url, token=self.token, timeout_s=timeout_s)

    def _policy_client(self, timeout_s: float = 30.0) -> PolicyClient:
        return PolicyClient(self.config.policy_url, token=self.token, timeout_s=timeout_s)

    def _labelstudio(self):
        return labelstudio_client(self.labelstudio_url, self.labelstudio_token)

    def _select(self, number: int, record: dict) -> dict:
        used = {p["prompt"] for r in self.state.history() for p in r.get("selected", [])}
        available = [p for p in self.pool if p not in used]
        if not available:
            raise PreconditionError("every prompt of the pool has been annotated; add prompts")
        rng = random.Random(self.config.seed * 1000 + number)
        wanted = self.config.round_prompts(number)
        pool = rng.sample(available, min(len(available), wanted * self.config.pool_factor))
        k = 2 if TEMPLATES[self.config.template].pairwise else self.config.candidates
        with self._policy_client(1800) as policy:
            candidates, origins = mixed_candidates(
                policy, pool, k, self._candidate_policies(policy), rng,
                max_new_tokens=self.config.max_new_tokens, seed=self.config.seed + number,
            )  # fmt: skip
        usable = [i for i, texts in enumerate(candidates) if all(t.strip() for t in texts)]
        with self._reward_client(600) as reward:
            ranked = [reward.rank(pool[i], candidates[i]) for i in usable]
        strategy = self.config.selection
        if strategy == "disagreement" and all(r.spreads for r in ranked):
            values = [mean_spread(r.spreads) for r in ranked]
        else:  # a single reward model (the base, before an ensemble is trained) has no spread to go by
            strategy = "uncertainty" if strategy == "disagreement" else strategy
            values = [order_uncertainty(r.probabilities) for r in ranked]
        chosen = select_prompts(values, wanted, strategy, self.config.random_share, rng)
        selected = [
            {"prompt": pool[usable[c.index]], "candidates": candidates[usable[c.index]],
             "candidate_policies": origins[usable[c.index]], "strategy": c.strategy, "uncertainty": c.uncertainty}
            for c in chosen
        ]  # fmt: skip
        return {"selected": selected, "generated_by": sorted({v for row in origins for v in row})}

    def _candidate_policies(self, policy: PolicyClient) -> list[str]:
        """The policy versions that write an iteration's candidates: the active one, and an older one when mixed.

        Candidates of one policy grow alike as it improves, and their pairs get
        hard to judge; mixing in the policy it replaced (or the base) keeps
        pairs that span quality levels (Llama 2 sampled from several checkpoints).
        """
        listing = policy.list_versions()
        active, base = listing.active, listing.versions[0].id
        mix = self.config.candidate_policies
        if mix == "active":
            return [active]
        older = base
        if mix == "active+previous":
            promoted = [r["policy_started_from"] for r in self.state.history() if r.get("decision") == "promote"]
            older = promoted[-1] if promoted else base
        return list(dict.fromkeys([active, older]))

    def _tasks(self, number: int, record: dict) -> dict:
        client = self._labelstudio()
        existing = self._iteration_tasks(client, number)
        template = TEMPLATES[self.config.template]
        missing = [
            {**candidate_data(s["prompt"], s["candidates"], template, provenance(s["candidate_policies"])),
             "iteration": number, "key": _key(s["prompt"])}
            for s in record["selected"]
            if _key(s["prompt"]) not in existing
        ]  # fmt: skip
        if missing:  # only what a killed run did not import yet: no duplicate tasks
            client.projects.import_tasks(self.project_id, request=missing, return_task_ids=True)
        return {"task_ids": sorted(self._iteration_tasks(client, number).values())}

    def _iteration_tasks(self, client, number: int, project_id: int | None = None) -> dict[str, int]:
        tasks = client.tasks.list(project=project_id or self.project_id, fields="all")
        return {t.data["key"]: t.id for t in tasks if (t.data or {}).get("iteration") == number}

    def _collect(self, number: int, record: dict) -> dict:
        client = self._labelstudio()
        result = {}
        if self.config.simulate:
            from services.sim.simulated_annotators import calibrate_temperature

            groups = [[self.gold(s["prompt"], c) for c in s["candidates"]] for s in record["selected"]]
            temperature = calibrate_temperature(groups, self.config.target_agreement)
            self._simulate_annotators(self.project_id, temperature, self.config.seed + number)
            result["annotator_temperature"] = temperature
        self._wait_for_annotations(client, self.project_id, record["task_ids"], "tasks ranked")
        sync = sync_project(client, self.store, self.project_id)
        mine = [p for p in self.store.all(self.project_id) if p.task_id in set(record["task_ids"])]
        return {**result, "rankings": len(mine), "agreement": pairwise_agreement(mine)["agreement"],
                "from_prediction": sum(p.from_prediction for p in mine),
                "untouched_prerankings": sum(p.untouched_prediction for p in mine), "sync": vars(sync)}  # fmt: skip

    def _simulate_annotators(self, project_id: int, temperature: float, seed: int) -> None:
        """Simulated annotators (real Label Studio accounts) answer every task of the project they have not."""
        from services.sim.simulated_annotators import simulated_annotators

        data_dir = Path(self.config.labelstudio_data_dir) if self.config.labelstudio_data_dir else default_data_dir()
        annotators = simulated_annotators(
            self.labelstudio_url, self.labelstudio_token, data_dir / "simulated-annotators.json",
            self.config.simulated_annotators, temperature, seed, self.config.simulated_anchoring,
        )  # fmt: skip
        for annotator in annotators:
            annotator.annotate(project_id, self.gold)

    def _wait_for_annotations(self, client, project_id: int, task_ids: list[int], label: str) -> None:
        """Until every task has annotations_per_task submitted annotations, or wait_timeout_s has passed."""
        deadline = time.monotonic() + self.config.wait_timeout_s
        while True:
            # Counted from the annotations themselves: Label Studio's total_annotations counter can lag
            # them for good when the server dies between saving an annotation and updating the count.
            tasks = {t.id: t for t in client.tasks.list(project=project_id, fields="all")}
            counts = [
                sum(not sdk_field(a, "was_cancelled") for a in (tasks[t].annotations or [])) if t in tasks else 0
                for t in task_ids
            ]
            done = sum(c >= self.config.annotations_per_task for c in counts)
            self.display.steps(label, done, len(counts))
            if done == len(counts) or time.monotonic() > deadline:
                return
            time.sleep(10)

    def _reward(self, number: int, record: dict) -> dict:
        """Train on every ranking so far but this round's held-out prompts; gate new vs active on those."""
        c = self.config
        stored, untouched = self._training_preferences()
        rankings = [p.ranking for p in stored]
        selected = record["selected"]
        heldout_prompts = heldout_split([s["prompt"] for s in selected], rankings, c.rm_heldout_share, c.seed + number,
                                        {s["prompt"] for s in selected if s.get("strategy") == "random"})  # fmt: skip
        train = [r for r in rankings if r.prompt not in heldout_prompts]
        heldout = [p for p in stored if p.ranking.prompt in heldout_prompts]
        with self._reward_client(3600) as reward:
            listing = reward.list_versions()
            if "rm_baseline_version" not in record:
                # Saved before training: a stage resumed after a kill (perhaps after its own promotion)
                # compares with the model that served when it started.
                record["rm_baseline_version"] = listing.active
                self.state.save(number, "reward", record)
            baseline = record["rm_baseline_version"]
            init = baseline if c.reward_warm_start else listing.versions[0].id
            heldout_rankings = [p.ranking for p in heldout]
            # A version of exactly this data may exist if the loop died after training finished.
            data_hash = training_data_hash(train, heldout_rankings)
            done = [v for v in listing.versions if v.data_hash == data_hash and v.parent == init]
            if done:
                version = done[-1]
            else:
                stream = reward.train(train, heldout_rankings=heldout_rankings, init_version=init, **c.reward_train)
                version = self._follow(stream, "reward model step")[-1].version
            tallies = heldout_tallies(reward, version.id, baseline, heldout)
            reasons = reward_gate(tallies, c.gates, seed=c.seed + number)
            if not reasons:
                reward.promote(version.id)
        figures = heldout_figures(tallies)
        return {"reward_version": version.id, "rm_accuracy": figures.accuracy,
                "rm_baseline_accuracy": figures.active_accuracy, "rm_agreement": figures.agreement,
                "rm_heldout_pairs": sum(t.pairs for t in tallies), "rm_heldout_prompts": len(heldout_prompts),
                "rm_train_rankings": len(train), "rm_init_version": init, "rm_reasons": reasons,
                "rm_untouched_prerankings": untouched,
                "rm_untouched_excluded": untouched if c.untouched_prerankings == "exclude" else 0}  # fmt: skip

    def _training_preferences(self) -> tuple[list[StoredPreference], int]:
        """(the project's rankings to train on, how many were submitted exactly as pre-ranked)."""
        stored = self.store.all(self.project_id)
        untouched = sum(p.untouched_prediction for p in stored)
        if self.config.untouched_prerankings == "exclude":  # the reward model's own order echoed: no information
            stored = [p for p in stored if not p.untouched_prediction]
        return stored, untouched

    def _policy(self, number: int, record: dict) -> dict:
        c = self.config
        if c.policy_method != "dpo" and not self._trained_reward_model_serves():
            # Optimising against the untrained base reward model would only teach the policy noise.
            return {"policy_version": None, "policy_skipped": "no trained reward model has passed its gate yet"}
        with self._policy_client(6 * 3600) as policy:
            if c.policy_method == "dpo":
                request = {"rankings": [p.ranking for p in self._training_preferences()[0]]}
            else:
                request = {"prompts": [s["prompt"] for r in self.state.history() for s in r.get("selected", [])]}
            # Each iteration refines the active policy. Called again after a crash, the same request
            # (the active version only changes in "decide") resumes from the service's checkpoint.
            start = policy.info().active_version
            stream = policy.train(
                **request, method=c.policy_method, seed=c.seed + number, init_version=start, **policy_train_settings(c)
            )
            events = self._follow(stream, f"policy {c.policy_method} step")
        return {"policy_version": events[-1].version.id, "policy_started_from": start}

    def _trained_reward_model_serves(self) -> bool:
        with self._reward_client() as reward:
            listing = reward.list_versions()
        return listing.active != listing.versions[0].id  # the first version is the untrained base

    def _follow(self, stream, label: str) -> list:
        """All events of a training stream, its steps shown as they come."""
        events = []
        for event in stream:
            if event.WhichOneof("event") == "progress":
                self.display.steps(label, event.progress.step, event.progress.total_steps)
            events.append(event)
        return events

    def _evaluate(self, number: int, record: dict) -> dict:
        if record["policy_version"] is None:
            return {}
        with self._policy_client(3600) as policy:
            # Each prompt repeated: more answers per prompt, a steadier win-rate for the gate.
            result = policy.evaluate(
                record["policy_version"], self.heldout * self.config.eval_samples,
                max_new_tokens=self.config.max_new_tokens, seed=self.config.eval_seed,
            )  # fmt: skip
        evaluation = {
            "win_rate": result.win_rate,
            "kl": result.kl_to_reference,
            "candidate_mean_reward": result.candidate_mean_reward,
            "baseline_mean_reward": result.baseline_mean_reward,
        }
        if result.has_gold:
            evaluation |= {"gold_win_rate": result.gold_win_rate, "candidate_mean_gold": result.candidate_mean_gold}
        return evaluation

    def _judge(self, number: int, record: dict) -> dict:
        """With policy_judge = "people": pairwise tasks, new vs active policy, answered by people."""
        if self.config.policy_judge != "people" or record["policy_version"] is None:
            return {}
        c = self.config
        client = self._labelstudio()
        project, _ = find_or_create_project(
            client, evaluation_project_title(c.project_title), EVALUATION_TEMPLATE.label_config
        )
        existing = self._iteration_tasks(client, number, project.id)
        missing = [p for p in self.heldout if task_key(number, p) not in existing]
        if missing:  # only what a killed run did not import yet: no duplicate tasks
            with self._policy_client(3600) as policy:
                active = policy.info().active_version
                new_texts, _ = policy.generate_texts(
                    missing, 1, version=record["policy_version"], seed=c.eval_seed, max_new_tokens=c.max_new_tokens
                )
                active_texts, _ = policy.generate_texts(
                    missing, 1, version=active, seed=c.eval_seed, max_new_tokens=c.max_new_tokens
                )
            versions = (record["policy_version"], active)
            tasks = evaluation_tasks(number, missing, [t[0] for t in new_texts], [t[0] for t in active_texts],
                                     versions, random.Random(c.seed * 1000 + number))  # fmt: skip
            client.projects.import_tasks(project.id, request=tasks, return_task_ids=True)
        task_ids = sorted(self._iteration_tasks(client, number, project.id).values())
        if c.simulate:
            self._simulate_annotators(project.id, record.get("annotator_temperature", 0.1), c.seed + 500 + number)
        self._wait_for_annotations(client, project.id, task_ids, "evaluation tasks judged")
        exported = [t for t in client.projects.exports.as_json(project.id) if t["id"] in set(task_ids)]
        judged = [j for j in judged_tasks(exported, project.id, project.label_config) if j.people is not None]
        if not judged:
            return {"human_win_rate": float("nan"), "human_eval_tasks": 0}
        with self._reward_client(600) as reward:
            scored = score_pairs(reward, "", [PreferencePair(j.prompt, j.new, j.active, 1) for j in judged])
        opinions = {"proxy": [win(new, active) for new, active in scored], "people": [j.people for j in judged]}
        if c.simulate:
            opinions["gold"] = [win(self.gold(j.prompt, j.new), self.gold(j.prompt, j.active)) for j in judged]
        return {"human_win_rate": statistics.fmean(opinions["people"]), "human_eval_tasks": len(judged),
                "human_votes": sum(len(j.votes) for j in judged), "evaluation_project_id": project.id,
                "judges_agreement": judges_agreement(opinions)}  # fmt: skip

    def _decide(self, number: int, record: dict) -> dict:
        if record["policy_version"] is None:
            reasons = [record["policy_skipped"]]
        else:
            people = self.config.policy_judge == "people"
            win_rate = record["human_win_rate"] if people else record["win_rate"]
            reasons = policy_gate(win_rate, record["kl"], self.config.gates, judge="people" if people else "")
        if not reasons:
            with self._policy_client() as policy:
                policy.promote(record["policy_version"])
        decision = "promote" if not reasons else "rollback"
        self.progress(f"iteration {number}: {decision}" + (f" ({'; '.join(reasons)})" if reasons else ""))
        return {"decision": decision, "policy_reasons": reasons}
