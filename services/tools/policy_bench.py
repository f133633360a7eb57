"""`rlhf-loop bench policy`: generation and GRPO costs of the service, measured side by side in one run.

1. Generate tokens/s over gRPC vs a direct `model.generate` with the same batch and sampling.
2. GRPO step time with the reward from the reward service over gRPC vs an in-process reward
   function that computes the same scores with the same reward-model version.
3. Peak RSS of the policy service (and of its training worker) during a GRPO run.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from services.models.loading import resolve_model
from services.models.registry import ModelRegistry
from services.policy.client import PolicyClient
from services.policy.policy_model import format_prompt, load_causal_lm, pick_device
from services.policy.remote_reward import RemoteReward, completion_text, prompt_text
from services.policy.training.config import PolicyTrainConfig
from services.policy.training.online import train_online
from services.reward.client import RewardClient
from services.reward.scorer import RewardScorer, ScoreItem
from services.tools.memory import RssSampler, tree_rss_bytes
from services.tools.progress import stderr_progress
from services.tools.service_process import ServiceProcess

TARGETS = {"generate_grpc_vs_direct": 0.9, "remote_reward_step_overhead": 1.15, "policy_service_peak_rss_gb": 6.0}
PROMPTS = [
    "Write a short, friendly note to a neighbour.",
    "Explain how a rainbow forms.",
    "Give me three tips for learning Python.",
    "Describe the sea on a calm morning.",
    "How do I make bread at home?",
    "What is a good way to start running?",
    "Suggest a name for a small bakery.",
    "Why is the sky blue?",
]


_progress = stderr_progress("bench policy")


class InProcessReward:
    """The same scores as the reward service, computed in this process with the same version."""

    __name__ = "in_process_reward"

    def __init__(self, scorer: RewardScorer):
        self.scorer = scorer

    async def __call__(self, prompts, completions, **kwargs) -> list[float]:
        items = [
            ScoreItem(prompt_text(p), completion_text(c) or " ") for p, c in zip(prompts, completions, strict=True)
        ]
        return self.scorer.score(items)


def _direct_generate_tokens_per_s(model_path: Path, prompts: list[str], n: int, max_new_tokens: int) -> float:
    model, tokenizer = load_causal_lm(model_path, pick_device())
    chat = bool(getattr(tokenizer, "chat_template", None))
    encoded = tokenizer(
        [format_prompt(tokenizer, p) for p in prompts], return_tensors="pt", padding=True, add_special_tokens=not chat
    ).to(model.device)
    options = {
        "max_new_tokens": max_new_tokens, "do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
        "num_return_sequences": n, "pad_token_id": tokenizer.pad_token_id,
    }  # fmt: skip
    rates = []
    for seed in (0, 1, 2):  # the first call warms up
        torch.manual_seed(seed)
        began = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**encoded, **options)
        completions = out[:, encoded["input_ids"].shape[1] :]
        tokens = int(_generated_token_count(completions, tokenizer.eos_token_id))
        rates.append(tokens / (time.perf_counter() - began))
    return statistics.mean(rates[1:])


def _generated_token_count(completions: torch.Tensor, eos: int) -> int:
    """Tokens up to and including the first EOS of each row (what Generate reports as completion_tokens)."""
    finished = torch.cumsum(completions == eos, dim=1)
    return int(((finished == 0) | ((finished == 1) & (completions == eos))).sum())


def _grpc_generate_tokens_per_s(client: PolicyClient, prompts: list[str], n: int, max_new_tokens: int) -> float:
    rates = []
    for seed in (0, 1, 2):
        began = time.perf_counter()
        reply = client.generate(prompts, n=n, temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=seed)
        tokens = sum(c.completion_tokens for row in reply.results for c in row.completions)
        rates.append(tokens / (time.perf_counter() - began))
    return statistics.mean(rates[1:])


def _grpo_step_seconds(model_path: Path, reward, config: PolicyTrainConfig, prompts: list[str], run_dir: Path) -> float:
    """Mean step time of an in-process GRPO run (the first step, with its warm-up, excluded)."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        train_online(model_path, None, prompts, config, reward, run_dir)
    steps = [json.loads(line) for line in captured.getvalue().splitlines() if line.startswith('{"type": "progress"')]
    return statistics.mean(s["step_seconds"] for s in steps[1:])


def run_policy_benchmark(
    policy_model: str = "smollm2",
    reward_model: str = "minilm",
    prompts: int = 4,
    n: int = 4,
    max_new_tokens: int = 32,
    grpo_steps: int = 4,
) -> dict:
    batch = (PROMPTS * (prompts // len(PROMPTS) + 1))[:prompts]
    config = PolicyTrainConfig(
        max_steps=grpo_steps, prompts_per_step=min(prompts, 4), num_generations=n, max_new_tokens=max_new_tokens,
        save_steps=10_000,
    )  # fmt: skip
    policy_path = resolve_model(policy_model)
    with tempfile.TemporaryDirectory(prefix="rlhf-bench-policy-") as tmp:
        root = Path(tmp)
        reward = ServiceProcess(
            "reward", ["--registry", str(root / "reward"), "--model", reward_model], root / "reward.log"
        )
        policy = None
        try:
            reward.wait_ready()
            policy = ServiceProcess(
                "policy",
                ["--registry", str(root / "policy"), "--model", str(policy_path), "--reward-url", reward.target],
                root / "policy.log",
            )
            policy.wait_ready(timeout_s=600)
            with PolicyClient(policy.target, timeout_s=1800) as client:
                _progress(f"Generate over gRPC: {prompts} prompts x {n}, {max_new_tokens} new tokens")
                grpc_rate = _grpc_generate_tokens_per_s(client, batch, n, max_new_tokens)
                _progress(f"GRPO through the service ({grpo_steps} steps), watching RSS")
                train_args = {k: v for k, v in config.as_dict().items() if k != "init_version"}
                with RssSampler({"tree": partial(tree_rss_bytes, policy.process.pid)}, interval_s=0.25) as watcher:
                    events = list(client.train(prompts=batch, **train_args))
                tree_peak = watcher.peak("tree")
                service_peak = policy.peak_rss_bytes()
                service_steps = [e.progress.step_seconds for e in events[:-1]]
            policy.stop()
            policy = None
            _progress("direct model.generate, same batch and sampling")
            direct_rate = _direct_generate_tokens_per_s(policy_path, batch, n, max_new_tokens)
            _progress("in-process GRPO: reward over gRPC, then the same reward computed in process")
            remote = RemoteReward(reward.target)
            remote_step = _grpo_step_seconds(policy_path, remote, config, batch, root / "run-remote")
            with RewardClient(reward.target) as reward_client:
                reward_version = reward_client.info().active_version
            version = ModelRegistry(root / "reward", "reward").get(reward_version)
            scorer = RewardScorer.load(version.path, version.id, max_length=512)
            scorer.model.to(pick_device())  # where the reward service runs it too
            local_step = _grpo_step_seconds(policy_path, InProcessReward(scorer), config, batch, root / "run-local")
        finally:
            if policy is not None:
                policy.stop()
            reward.stop()

    ratios = {
        "generate_grpc_vs_direct": grpc_rate / direct_rate,
        "remote_reward_step_overhead": remote_step / local_step,
    }
    met = {
        "generate_grpc_vs_direct": ratios["generate_grpc_vs_direct"] >= TARGETS["generate_grpc_vs_direct"],
        "remote_reward_step_overhead": ratios["remote_reward_step_overhead"] <= TARGETS["remote_reward_step_overhead"],
        "policy_service_peak_rss_gb": tree_peak / 2**30 < TARGETS["policy_service_peak_rss_gb"],
    }
    r = round
    return {
        "benchmark": "policy",
        "policy_model": policy_model,
        "reward_model": reward_model,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "generate": {"prompts": prompts, "n": n, "max_new_tokens": max_new_tokens},
        "tokens_per_s": {"grpc": r(grpc_rate, 2), "direct": r(direct_rate, 2)},
        "grpo_step_seconds": {
            "remote_reward": r(remote_step, 3),
            "in_process_reward": r(local_step, 3),
            "through_service": r(statistics.mean(service_steps[1:] or service_steps), 3),
        },
        "policy_service_peak_rss_gb": r(service_peak / 2**30, 3),
        "policy_service_with_worker_peak_rss_gb": r(tree_peak / 2**30, 3),
        "ratios": {k: r(v, 3) for k, v in ratios.items()},
        "targets": TARGETS,
        "targets_met": all(met.values()),
        "target_results": met,
    }
