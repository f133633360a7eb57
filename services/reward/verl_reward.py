"""The reward service as verl's custom reward function: `compute_score`, and `compute_score_batch`.

    reward.custom_reward_function.path=pkg://services.reward.verl_reward   # or this file's path
    reward.custom_reward_function.name=compute_score                      # compute_score_batch: batch manager

(Older verl reads the same keys at the top level, `custom_reward_function.path/name`.) verl calls
`compute_score(data_source=, solution_str=, ground_truth=, extra_info=)` once per response; its `batch`
reward manager calls `compute_score_batch(data_sources=, solution_strs=, ground_truths=, extra_infos=)` once
per batch, which is one Score request. Any `custom_reward_function.reward_kwargs` arrive as keyword
arguments on every call, as do verl's own extras (`reward_router_address`, ...), which are ignored here.

verl passes no client options, so the service comes from `reward_url` in reward_kwargs or
$RLHF_LOOP_REWARD_URL, a CA certificate for TLS from $RLHF_LOOP_REWARD_TLS_CA, and the bearer token only
from $RLHF_LOOP_REWARD_TOKEN (never the config, which verl logs); `reward_version` pins a model version.
verl passes no prompt either: it is read from the row's `extra_info["prompt"]` (text or chat messages),
else `extra_info["question"]` (what verl's example preprocessing stores), else left empty. The data
source and the ground truth are not used: a reward model needs no reference answer.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from services.core.env import REWARD_TLS_CA_ENV, REWARD_TOKEN_ENV, REWARD_URL_ENV
from services.core.errors import PreconditionError
from services.policy.remote_reward import prompt_text
from services.reward.trl_reward import RemoteReward

PROMPT_KEYS = ("prompt", "question")


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping | None = None, **kwargs: Any
) -> float:
    """The reward service's score of one response (verl's custom reward function signature); a blank one: 0.0."""
    (score,) = compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info], **kwargs)
    return score


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping | None] | None = None,
    *,
    reward_url: str | None = None,
    reward_version: str = "",
    **verl_extras: Any,
) -> list[float]:
    """One score per response, from one Score request; an empty response gets the lowest of its batch."""
    infos = extra_infos if extra_infos is not None else [None] * len(solution_strs)
    target = reward_url or os.environ.get(REWARD_URL_ENV)
    if not target:
        raise PreconditionError(
            f"set ${REWARD_URL_ENV} (or custom_reward_function.reward_kwargs.reward_url) to the reward service's "
            "HOST:PORT"
        )
    reward, loop = _service(target, reward_version)
    scored = reward(prompts=[prompt_of(info) for info in infos], completions=list(solution_strs))
    return asyncio.run_coroutine_threadsafe(scored, loop).result()  # verl's calls are synchronous: block


def prompt_of(extra_info: Mapping | None) -> str:
    """The prompt a response answers, from its row's extra_info; "" when the row carries none."""
    for key in PROMPT_KEYS:
        # `is not None`, not truthiness: from a parquet file, a chat prompt arrives as a numpy array.
        if extra_info and extra_info.get(key) is not None:
            return prompt_text(extra_info[key])
    return ""


# verl may call from many threads at once (its reward loop runs synchronous functions in an executor).
_CREATING = threading.Lock()


def _service(target: str, version: str) -> tuple[RemoteReward, asyncio.AbstractEventLoop]:
    """This process's RemoteReward for `target` and the loop it runs on, each made once however many threads ask."""
    with _CREATING:
        return _reward(os.getpid(), target, version), _loop(os.getpid())


# Keyed by process id: verl may fork reward workers, and a child inherits the cache but not the thread.
@functools.cache
def _loop(pid: int) -> asyncio.AbstractEventLoop:
    """An event loop in a daemon thread: every call, from any thread, shares its one gRPC channel."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="rlhf-loop-verl-reward", daemon=True).start()
    return loop


@functools.cache
def _reward(pid: int, target: str, version: str) -> RemoteReward:
    tls_ca = os.environ.get(REWARD_TLS_CA_ENV)
    return RemoteReward(
        target, token=os.environ.get(REWARD_TOKEN_ENV) or None, tls_ca=Path(tls_ca) if tls_ca else None, version=version
    )
