"""`rlhf-loop chaos --seed S --kills N`: kill -9 parts of a running loop at random moments, then check the result.

A full loop runs on tiny models with a real Label Studio, the reward and
policy services, the backend (wired to the project's webhooks) and simulated
annotators. The preference store and the loop state share one PostgreSQL
server (or, with `--database sqlite`, SQLite files). At seeded random moments a
randomly chosen part -- the controller, the reward service, the policy
service, the backend, Label Studio or the PostgreSQL server -- is killed and
restarted: SIGKILL, or for PostgreSQL an immediate shutdown, its own crash
(a SIGKILLed postmaster would leave its backends holding the data). At the end:

- the loop finished its iterations;
- the preference store equals Label Studio's export, ranking for ranking;
- every task has exactly its annotations, one per annotator: none lost, none twice;
- every registry version is complete and loads;
- the active versions are ones that passed their gates.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labelstudio_backend import labelstudio_server
from labelstudio_backend.preference_store import PreferenceStore
from labelstudio_backend.project_setup import init_project, labelstudio_client
from labelstudio_backend.webhooks import preference_from_annotation
from services.controller.loop_config import toml_text
from services.controller.loop_state import LoopState
from services.models.registry import ModelRegistry
from services.sim.tiny_model import build_tiny_llama
from services.tools.local_stack import LocalStack
from services.tools.postgres_server import PostgresServer
from services.tools.progress import stderr_progress

COMPONENTS = ("controller", "reward", "policy", "backend", "labelstudio")
DATABASE = "database"
PROJECT = "chaos"


_say = stderr_progress("chaos")


class Stack(LocalStack):
    """The parts of a loop, the controller among them, each restartable on its port after a kill."""

    def __init__(self, root: Path, model: Path, iterations: int, seed: int, database: str = "postgresql"):
        super().__init__(root, progress=_say)
        self.model = model
        self.iterations = iterations
        self.postgres = PostgresServer().start() if database == "postgresql" else None
        if self.postgres:  # one database for both, as the compose and k8s stacks have it
            self.store_url = self.state_url = self.postgres.new_database()
        else:
            self.store_url = f"sqlite:///{root / 'preferences.db'}"
            self.state_url = f"sqlite:///{root / 'loop-state.db'}"
        self.components = COMPONENTS + ((DATABASE,) if self.postgres else ())
        self.config = root / "loop.toml"
        self.controller: subprocess.Popen | None = None
        self.controller_runs = 0
        settings = {
            "state_url": self.state_url, "store_url": self.store_url,
            "reward_url": self.target("reward"), "policy_url": self.target("policy"),
            "labelstudio_data_dir": str(self.labelstudio_dir), "project_title": PROJECT, "iterations": iterations,
            "prompts_per_iteration": 4, "candidates": 3, "heldout_prompts": 4, "max_new_tokens": 8, "simulate": True,
            "simulated_annotators": 2, "annotations_per_task": 2, "seed": seed, "service_retry_s": 600,
            "reward_train": {"epochs": 4, "learning_rate": 1e-3, "batch_size": 16},
            "policy_train": {"max_steps": 6, "save_steps": 2, "prompts_per_step": 2, "num_generations": 4,
                             "learning_rate": 1e-2},
            "gates": {"min_rm_accuracy": 0.0, "min_rm_agreement_share": 0.0, "max_rm_accuracy_drop": 1.0,
                      "min_win_rate": 0.0},
        }  # fmt: skip
        self.config.write_text(toml_text(settings))

    def start(self, name: str) -> None:
        """Start (or restart) one component."""
        if name == "labelstudio":
            self.labelstudio()
        elif name == DATABASE:
            self.postgres.restart()
        elif name == "controller":
            log = open(self.root / f"controller-{self.controller_runs}.log", "w")  # noqa: SIM115 - the child's
            self.controller = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "loop", "run", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            self.controller_runs += 1
        elif name == "reward":
            self.reward(str(self.model), timeout_s=300)
        elif name == "policy":
            self.policy(str(self.model), "--gold-scorer", "services.sim.gold:vader_positivity", timeout_s=300)
        else:
            self.backend(self.store_url, timeout_s=300)

    def kill(self, name: str) -> None:
        """SIGKILL, no warning, as a crashed machine would (PostgreSQL: its immediate shutdown, a crash)."""
        if name == "labelstudio":
            pid = int((self.labelstudio_dir / labelstudio_server.PID_FILE).read_text())
            os.killpg(pid, signal.SIGKILL)
            labelstudio_server.down(self.labelstudio_dir, timeout_s=1)  # forget the dead process
        elif name == DATABASE:
            self.postgres.stop("immediate")
        elif name == "controller":
            if self.controller and self.controller.poll() is None:
                self.controller.kill()
                self.controller.wait()
        else:
            process = self.processes[name].process
            process.kill()
            process.wait()

    def close(self) -> None:
        """The controller first, then the parts it uses."""
        if self.controller and self.controller.poll() is None:
            self.controller.kill()
        super().close()
        if self.postgres:
            self.postgres.remove()

    def done(self) -> bool:
        # Every configured iteration, not just every recorded one: an iteration has no record until its
        # first stage ends, so between iterations all recorded ones are done while the loop still runs.
        history = LoopState(self.state_url).history()
        return [r["iteration"] for r in history if r["stage"] == "done"] == list(range(1, self.iterations + 1))


def _registry(stack: Stack, role: str) -> ModelRegistry:
    return ModelRegistry(stack.registry(role), role)


def _check(stack: Stack, iterations: int) -> dict:
    """What must hold after any number of kills."""
    history = LoopState(stack.state_url).history()
    credentials = labelstudio_server.load_credentials(stack.labelstudio_dir)
    client = labelstudio_client(credentials.url, credentials.token)
    project = next(p for p in client.projects.list() if p.title == PROJECT)
    exported = client.projects.exports.as_json(project.id)
    store = PreferenceStore(stack.store_url)
    stored = {p.annotation_id: p for p in store.all(project.id)}
    expected = {
        a["id"]: preference_from_annotation(a, task, project.id, project.label_config)
        for task in exported
        for a in task["annotations"]
    }
    per_task = [sorted(str(a["completed_by"]) for a in task["annotations"]) for task in exported]
    checks = {
        "iterations_finished": [r["iteration"] for r in history if r["stage"] == "done"]
        == list(range(1, iterations + 1)),
        "store_equals_export": {k: v.ranking.tiers for k, v in stored.items()}
        == {k: v.ranking.tiers for k, v in expected.items()},
        "each_task_ranked_once_per_annotator": all(len(a) == 2 and len(set(a)) == 2 for a in per_task),
        "no_duplicate_tasks": len(exported) == 4 * iterations,
    }
    checks |= _registries_load(stack)
    reward, policy = _registry(stack, "reward"), _registry(stack, "policy")
    passed_rm = {r["reward_version"] for r in history if not r.get("rm_reasons")} | {reward.list()[0].id}
    promoted = {r["policy_version"] for r in history if r.get("decision") == "promote"} | {policy.list()[0].id}
    checks["active_reward_passed_its_gate"] = reward.active in passed_rm
    checks["active_policy_passed_its_gate"] = policy.active in promoted
    return checks


def _registries_load(stack: Stack) -> dict:
    """Every version of both registries loads the way the services load it."""
    from services.policy.policy_model import PolicyModel
    from services.reward.scorer import RewardScorer

    for version in _registry(stack, "reward").list():
        RewardScorer.load(version.path, version.id, max_length=64).score([])
    policy = PolicyModel(stack.model)
    for version in _registry(stack, "policy").list():
        with policy.lock, policy.using(version):
            pass
    return {"registry_versions_load": True}


def run_chaos(seed: int, kills: int, iterations: int = 2, timeout_s: float = 1800.0,
              database: str = "postgresql") -> dict:  # fmt: skip
    rng = random.Random(seed)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rlhf-chaos-") as tmp:
        root = Path(tmp)
        stack = Stack(root, build_tiny_llama(root / "tiny-model"), iterations, seed, database)
        done: list[dict] = []
        try:
            for name in ("labelstudio", "reward", "policy", "backend"):
                stack.start(name)
            credentials = labelstudio_server.load_credentials(stack.labelstudio_dir)
            # The backend hears every annotation through the project's webhook, as in production.
            init_project(labelstudio_client(credentials.url, credentials.token), template="ranker", title=PROJECT,
                         backend_url=stack.processes["backend"].http, candidates=3)  # fmt: skip
            stack.start("controller")
            deadline = time.monotonic() + timeout_s
            while not stack.done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the loop did not finish within {timeout_s:.0f}s")
                if stack.controller.poll() is not None and not stack.done():
                    if stack.controller_runs > kills + 3:
                        raise RuntimeError(f"the controller keeps failing (exit {stack.controller.returncode})")
                    _say(f"controller exited ({stack.controller.returncode}); restarting it")
                    stack.start("controller")
                if len(done) < kills:
                    time.sleep(rng.uniform(2.0, 8.0))  # a tiny-model iteration takes about a minute
                    victim = rng.choice(stack.components)
                    history = LoopState(stack.state_url).history()
                    stage = history[-1]["stage"] if history else "setup"
                    if stack.done():
                        break
                    _say(f"kill -9 {victim} (stage {stage})")
                    stack.kill(victim)
                    time.sleep(rng.uniform(0.0, 3.0))
                    stack.start(victim)
                    done.append({"component": victim, "stage": stage, "at_s": round(time.monotonic() - began, 1)})
                else:
                    time.sleep(1.0)
            checks = _check(stack, iterations)
        finally:
            stack.close()
    return {
        "seed": seed, "database": database,
        "kills_planned": kills, "kills": done, "kills_survived": len(done) if all(checks.values()) else 0,
        "controller_runs": stack.controller_runs, "checks": checks, "passed": all(checks.values()),
        "wall_time_s": round(time.monotonic() - began, 1),
    }  # fmt: skip
