"""verl's custom reward function against a real reward service, called the ways verl calls it."""

import importlib.util
from concurrent import futures

import numpy as np
import pytest

from services.core.errors import PreconditionError
from services.reward import verl_reward
from services.reward.client import RewardClient
from services.reward.verl_reward import REWARD_URL_ENV, compute_score, compute_score_batch, prompt_of


def test_the_prompt_comes_from_extra_info():
    chat = np.array([{"role": "system", "content": "s"}, {"role": "user", "content": "Hi"}], dtype=object)
    assert prompt_of({"prompt": chat, "question": "ignored"}) == "Hi"  # a chat prompt, as parquet returns it
    assert prompt_of({"question": "What is 2+2?", "index": 3}) == "What is 2+2?"  # verl's example rows
    assert prompt_of({"index": 3}) == prompt_of(None) == ""


@pytest.mark.integration
def test_compute_score_is_the_services_score(server, monkeypatch):
    monkeypatch.setenv(REWARD_URL_ENV, server.target)
    with RewardClient(server.target) as client:
        expected, version = client.score([("Hi", "Hello there!"), ("", "Go away.")])
    # verl's call, with the extras its reward loop adds.
    score = compute_score(
        data_source="chat", solution_str="Hello there!", ground_truth="", extra_info={"prompt": "Hi"},
        reward_router_address=None, reward_model_tokenizer=None,
    )  # fmt: skip
    assert score == pytest.approx(expected[0], abs=1e-6)
    # The batch manager's call: one request; the pinned version and the reward_kwargs target give the same.
    batch = compute_score_batch(
        data_sources=["chat"] * 3, solution_strs=["Hello there!", "Go away.", " "], ground_truths=[None] * 3,
        extra_infos=[{"question": "Hi"}, {}, {}], reward_url=server.target, reward_version=version,
    )  # fmt: skip
    assert batch[:2] == pytest.approx(expected, abs=1e-6)
    assert batch[2] == min(batch[:2])  # an empty response is paid the least of its batch


@pytest.mark.integration
def test_verl_can_load_it_by_file_path_and_call_it_from_many_threads(server, monkeypatch):
    # `custom_reward_function.path=/…/verl_reward.py`: verl imports the file under a module name of its own.
    spec = importlib.util.spec_from_file_location("custom_module", verl_reward.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv(REWARD_URL_ENV, server.target)
    # verl's reward loop runs synchronous reward functions in executor threads: first calls at once, one channel.
    with futures.ThreadPoolExecutor(8) as pool:
        scores = list(pool.map(lambda _: module.compute_score("chat", "Hello!", "", {"prompt": "Hi"}), range(8)))
    # The same item, batched with 0-7 others by the service: equal up to the float noise of batch shapes.
    assert all(isinstance(s, float) for s in scores) and scores == pytest.approx([scores[0]] * 8, abs=1e-5)
    monkeypatch.delenv(REWARD_URL_ENV)
    with pytest.raises(PreconditionError, match=REWARD_URL_ENV):
        module.compute_score("chat", "Hello!", "", None)
