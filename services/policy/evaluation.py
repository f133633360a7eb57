"""Evaluate: a candidate and a baseline version sampled on the same prompts, scored by the reward service (and gold)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from services.core.win_rate import win_rate
from services.models.registry import VersionInfo
from services.policy.generation import Generated
from services.policy.policy_model import PolicyModel, completion_logprobs
from services.policy.remote_reward import RemoteReward
from services.policy.sampling import Sampling

# PolicyService.generate: (prompts, n, sampling, version, timeout_s) -> (completions per prompt, version id)
Generate = Callable[[Sequence[str], int, Sampling, str, float | None], Awaitable[tuple[list[list[Generated]], str]]]
GoldScorer = Callable[[str, str], float]


@dataclass(frozen=True)
class Evaluation:
    """What Evaluate answers; the gold fields stay None without a gold scorer."""

    candidate_mean_reward: float
    baseline_mean_reward: float
    win_rate: float
    kl_to_reference: float
    prompts: int
    reward_version: str
    gold_win_rate: float | None = None
    candidate_mean_gold: float | None = None
    baseline_mean_gold: float | None = None


async def evaluate(
    candidate: VersionInfo,
    baseline: VersionInfo,
    prompts: Sequence[str],
    sampling: Sampling,
    timeout_s: float | None,
    *,
    generate: Generate,
    batch_size: int,
    policy: PolicyModel,
    reference: VersionInfo,
    reward: RemoteReward,
    gold: GoldScorer | None = None,
) -> Evaluation:
    """One sample per prompt from each version (same seed), scored by `reward` (and `gold`); KL to `reference`."""
    prompts = list(prompts)
    sampling = replace(sampling, seed=sampling.seed or 0)  # both versions draw with one seed: only weights differ
    new_texts = await _one_sample_each(generate, batch_size, prompts, sampling, candidate.id, timeout_s)
    old_texts = await _one_sample_each(generate, batch_size, prompts, sampling, baseline.id, timeout_s)
    new_scores = await reward(prompts=prompts, completions=new_texts)
    old_scores = await reward(prompts=prompts, completions=old_texts)
    kl = await asyncio.to_thread(kl_to_reference, policy, candidate, reference, prompts, new_texts)
    result = {
        "candidate_mean_reward": sum(new_scores) / len(new_scores),
        "baseline_mean_reward": sum(old_scores) / len(old_scores),
        "win_rate": win_rate(new_scores, old_scores),
        "kl_to_reference": kl,
        "prompts": len(prompts),
        "reward_version": ",".join(sorted(reward.versions)),
    }
    if gold is not None:
        new_gold = [float(gold(p, t)) for p, t in zip(prompts, new_texts, strict=True)]
        old_gold = [float(gold(p, t)) for p, t in zip(prompts, old_texts, strict=True)]
        result |= {
            "gold_win_rate": win_rate(new_gold, old_gold),
            "candidate_mean_gold": sum(new_gold) / len(new_gold),
            "baseline_mean_gold": sum(old_gold) / len(old_gold),
        }
    return Evaluation(**result)


async def _one_sample_each(
    generate: Generate,
    batch_size: int,
    prompts: list[str],
    sampling: Sampling,
    version: str,
    timeout_s: float | None,
) -> list[str]:
    """One completion per prompt, in Generate-sized batches (evaluation sets can be larger)."""
    texts = []
    for start in range(0, len(prompts), batch_size):
        rows, _ = await generate(prompts[start : start + batch_size], 1, sampling, version, timeout_s)
        texts += [row[0].text for row in rows]
    return texts


def kl_to_reference(
    policy: PolicyModel, candidate: VersionInfo, reference: VersionInfo, prompts: list[str], texts: list[str]
) -> float:
    """Mean over samples of log p_candidate(y) - log p_reference(y)."""
    with policy.lock:
        with policy.using(candidate) as model:
            new = completion_logprobs(model, policy.tokenizer, prompts, texts)
        with policy.using(reference) as model:
            ref = completion_logprobs(model, policy.tokenizer, prompts, texts)
    return sum(n - r for n, r in zip(new, ref, strict=True)) / len(texts)
