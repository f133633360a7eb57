"""TRL's own GRPOTrainer, outside the policy service, paid by the reward service through RemoteReward."""

import math
import re
import urllib.request

import pytest

from services.proto.rlhf.v1 import reward_pb2, reward_pb2_grpc
from services.reward.client import RewardClient
from services.reward.trl_reward import RemoteReward
from tests.fixtures.recording_reward_server import serving

SCORE_REQUESTS = 'rlhf_reward_requests_total{code="OK",method="Score"}'
ITEMS_SCORED = "rlhf_reward_items_scored_total"


def metric(server, name: str) -> float:
    """A sample's value on the service's /metrics page (0 before its first increment)."""
    text = urllib.request.urlopen(f"{server.http}/metrics", timeout=10).read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class Recording(reward_pb2_grpc.RewardServiceServicer):
    """Records each ScoreRequest; the score of an item is its response's length."""

    def __init__(self):
        self.requests: list[reward_pb2.ScoreRequest] = []

    def Score(self, request, context):
        self.requests.append(request)
        return reward_pb2.ScoreResponse(scores=[float(len(i.response)) for i in request.items], model_version="r7")


@pytest.fixture
def recording():
    servicer = Recording()
    with serving(servicer) as target:
        yield servicer, target


async def test_conversational_calls_become_one_pinned_score_request(recording):
    from trl.trainer.utils import get_callable_name, is_async_callable

    servicer, target = recording
    reward = RemoteReward(target, version="reward-0003", name="helpfulness")
    assert is_async_callable(reward) and get_callable_name(reward) == "helpfulness"  # how TRL sees it
    prompts = [[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"}]] * 2
    completions = [[{"role": "assistant", "content": "Hello!"}], [{"role": "assistant", "content": "Hey"}]]
    # Awaited in one event loop, as TRL does: a grpc.aio channel belongs to the loop it first ran in.
    assert await reward(prompts=prompts, completions=completions, completion_ids=[[1], [2]]) == [6.0, 3.0]
    assert await reward(prompts=["Hi?"], completions=["Yo"]) == [2.0]  # TRL's standard format
    await reward.client.close()
    first, second = servicer.requests
    assert [(i.prompt, i.response) for i in first.items] == [("Hi?", "Hello!"), ("Hi?", "Hey")]
    assert first.version == second.version == "reward-0003"
    assert RemoteReward(target).__name__ == "reward_service"


@pytest.mark.integration
def test_grpo_trainer_trains_against_the_reward_service(server, tiny_model_dir, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    with RewardClient(server.target) as client:
        active = client.info().active_version
    requests_before, items_before = metric(server, SCORE_REQUESTS), metric(server, ITEMS_SCORED)
    steps, batch = 2, 4
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=batch,  # completions: 2 prompts x 2 generations per step
        num_generations=2,
        max_completion_length=8,
        learning_rate=1e-4,
        seed=1,
        use_cpu=True,
        bf16=False,  # TRL's defaults (bf16, gradient checkpointing) are for GPUs
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
    )
    prompts = ["Write a kind sentence.", "Explain how a rainbow forms.", "Say thank you.", "Describe the sea."]
    trainer = GRPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[RemoteReward(server.target, version=active)],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
    )
    trainer.train()

    assert trainer.state.global_step == steps
    logged = [entry for entry in trainer.state.log_history if "rewards/reward_service/mean" in entry]
    assert len(logged) == steps
    assert all(math.isfinite(entry["rewards/reward_service/mean"]) for entry in logged)
    # One batched Score request per generation batch, not one per completion.
    assert metric(server, SCORE_REQUESTS) - requests_before == steps
    assert 0 < metric(server, ITEMS_SCORED) - items_before <= steps * batch
