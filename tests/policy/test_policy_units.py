import asyncio
import math

import pytest

from services.core.errors import InvalidRequestError, PreconditionError
from services.core.loader import load_function
from services.core.rankings import PreferencePair
from services.core.win_rate import win_rate
from services.policy.generation import select_backend
from services.policy.remote_reward import RemoteReward, completion_text, prompt_text
from services.policy.sampling import Sampling
from services.policy.training.callbacks import kl_budget_callback
from services.policy.training.config import PolicyTrainConfig
from services.policy.training.data import TrainingData
from services.policy.training.spec import TrainSpec
from services.policy.training.trainable import last_checkpoint


def test_backend_selection_uses_vllm_only_when_asked_and_usable():
    assert select_backend("transformers", vllm_installed=True, cuda=True) == "transformers"
    assert select_backend("vllm", vllm_installed=True, cuda=True) == "vllm"
    with pytest.raises(PreconditionError, match="pip install vllm"):
        select_backend("vllm", vllm_installed=False, cuda=True)
    with pytest.raises(PreconditionError, match="CUDA"):
        select_backend("vllm", vllm_installed=True, cuda=False)
    with pytest.raises(InvalidRequestError, match="unknown generation backend"):
        select_backend("tgi")


@pytest.mark.parametrize(
    "sampling, field",
    [
        (Sampling(temperature=-0.1), "temperature"),
        (Sampling(temperature=math.nan), "temperature"),
        (Sampling(top_p=0.0), "top_p"),
        (Sampling(max_new_tokens=0), "max_new_tokens"),
        (Sampling(max_new_tokens=513), "max_new_tokens"),
        (Sampling(seed=-1), "seed"),
    ],
)
def test_sampling_out_of_range_is_rejected(sampling, field):
    with pytest.raises(InvalidRequestError, match=field):
        sampling.validate(max_new_tokens_limit=512)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"method": "ppo"}, "ppo"),
        ({"num_generations": 1}, "num_generations"),
        ({"beta": math.inf}, "beta"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"save_steps": 0}, "save_steps"),
        ({"target_kl": -1.0}, "target_kl"),
        ({"target_kl": 5.0, "method": "dpo"}, "target_kl"),
        ({"target_kl": 5.0, "beta": 0.0}, "target_kl"),
    ],
)
def test_policy_config_out_of_range_is_rejected(changes, field):
    with pytest.raises(InvalidRequestError, match=field):
        PolicyTrainConfig(**changes).validate()


def test_kl_budget_stops_training_once_the_recent_mean_reaches_the_target():
    from transformers import TrainerControl, TrainerState

    callback, control, state = kl_budget_callback(10.0, window=2), TrainerControl(), TrainerState()
    # Per-token KL x mean completion length = nats per completion: 4, 8 (mean 6), 11 (mean 9.5), 12 (mean 11.5).
    for step, kl in enumerate([0.1, 0.2, 0.275, 0.3], start=1):
        state.global_step = step
        callback.on_log(None, state, control, logs={"loss": 0.1, "kl": kl, "completions/mean_length": 40.0})
        assert control.should_training_stop == (step == 4), step
    callback.on_log(None, state, TrainerControl(), logs={"loss": 0.1})  # a log without KL changes nothing
    assert callback.estimate == pytest.approx(11.5)


def test_win_rate_counts_ties_half():
    assert win_rate([1.0, 2.0, 3.0, 0.0], [0.0, 2.0, 4.0, -1.0]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)


def test_gold_scorer_spec_resolves_or_explains():
    assert load_function("tests.fixtures.gold_scorers:length")("p", "abc") == 3.0
    with pytest.raises(InvalidRequestError, match="module:function"):
        load_function("no_such_module:f")


def test_trl_message_formats_are_read_as_text():
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"
    assert prompt_text([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]) == "q"


def test_empty_completions_score_as_the_worst_of_their_batch():
    class Recorded(RemoteReward):
        async def score(self, prompts, responses):
            self.sent = responses
            return [float(len(r)) for r in responses]

    reward = Recorded("unused:0")
    scores = asyncio.run(reward(prompts=["a", "b", "c"], completions=["four", "  ", "xy"]))
    assert reward.sent == ["four", "xy"]  # the reward service never sees empty text
    assert scores == [4.0, 2.0, 2.0]


class SpreadClient:
    """Stands in for the reward service: the mean and spread of an ensemble, or of a single model (no spread)."""

    target = "unused:0"

    def __init__(self, spreads):
        self.spreads = spreads

    async def score_with_spread(self, items, version=""):
        return [float(len(r)) for _, r in items], self.spreads[: len(items)], version or "reward-0002"


def test_a_conservative_reward_subtracts_lambda_times_the_ensembles_spread():
    reward = RemoteReward("unused:0", conservative_lambda=2.0)
    reward.client = SpreadClient([0.5, 0.25])
    assert asyncio.run(reward.score(["p", "q"], ["four", "xy"])) == [4.0 - 2 * 0.5, 2.0 - 2 * 0.25]
    plain = RemoteReward("unused:0")
    plain.client = SpreadClient([0.5, 0.25])
    assert asyncio.run(plain.score(["p", "q"], ["four", "xy"])) == [4.0, 2.0]  # lambda 0: the mean
    single = RemoteReward("unused:0", conservative_lambda=1.0)
    single.client = SpreadClient([])
    with pytest.raises(PreconditionError, match="needs an ensemble reward model"):
        asyncio.run(single.score(["p"], ["four"]))


def test_generation_stops_once_the_deadline_passes():
    import time

    import torch

    from services.policy.generation import _DeadlineStop

    ids = torch.zeros((3, 5), dtype=torch.long)
    assert not _DeadlineStop(None)(ids, None).any()
    assert not _DeadlineStop(time.monotonic() + 60)(ids, None).any()
    stop = _DeadlineStop(time.monotonic() - 0.001)
    assert stop(ids, None).all() and stop.hit


def test_train_spec_survives_the_trip_through_json(tmp_path):
    spec = TrainSpec(
        config=PolicyTrainConfig(method="dpo", max_steps=3),
        base_model=tmp_path / "base",
        init_adapter=tmp_path / "versions" / "policy-0002",
        run_dir=tmp_path / "runs" / "abc",
        output_dir=tmp_path / ".staging-x",
        reward_tls_ca=tmp_path / "ca.pem",
        pairs=(PreferencePair("p", "good", "bad", 1),),
    )
    spec.write(tmp_path / "spec.json")
    assert TrainSpec.read(tmp_path / "spec.json") == spec
    online = TrainSpec(PolicyTrainConfig(), tmp_path, None, tmp_path, tmp_path, "127.0.0.1:1", prompts=("a", "b"))
    online.write(tmp_path / "online.json")
    assert TrainSpec.read(tmp_path / "online.json") == online


def test_prompt_order_does_not_change_the_run_data_digest():
    assert TrainingData.from_prompts(["a", "b"]).digest == TrainingData.from_prompts(["b", "a"]).digest
    assert TrainingData.from_prompts(["a", "b"]).digest != TrainingData.from_prompts(["a", "c"]).digest
    with pytest.raises(PreconditionError, match="preference pairs"):
        TrainingData.from_rankings([])


def test_a_resume_skips_and_removes_a_checkpoint_killed_while_it_was_written(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False), (10, False)):
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"")
        if complete:
            (checkpoint / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-4"  # not checkpoint-10 (sorted by step, not name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert last_checkpoint(tmp_path / "empty") is None


# -- the vLLM backend's own logic, with vLLM faked at its edge (it needs CUDA) --------------------------------


class _FakeLLM:
    def __init__(self, **options):
        self.options = options
        self.calls = []

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        from types import SimpleNamespace

        self.calls.append((prompts, params, lora_request))
        done = SimpleNamespace(text="hi", token_ids=[5, 6], cumulative_logprob=-1.5, finish_reason="length")
        return [SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], outputs=[done] * params.n) for p in prompts]


class _ChatTokenizer:
    """Its chat template writes the BOS text itself, as Llama 3's does; called bare it would add one more."""

    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return f"<s>user: {messages[0]['content']}\nassistant:"

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [1] * add_special_tokens + [ord(c) for c in text]}


@pytest.fixture
def vllm_backend(monkeypatch, tmp_path):
    import sys
    from types import ModuleType, SimpleNamespace

    from services.policy.generation import VllmBackend

    vllm, lora, request = ModuleType("vllm"), ModuleType("vllm.lora"), ModuleType("vllm.lora.request")
    vllm.LLM, vllm.SamplingParams = _FakeLLM, SimpleNamespace
    request.LoRARequest = lambda name, int_id, path: SimpleNamespace(name=name, int_id=int_id, path=path)
    for module in (vllm, lora, request):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return VllmBackend(tmp_path / "base", _ChatTokenizer())


def _version(tmp_path, name: str, fmt: str, rank: int = 16):
    from services.models.registry import VersionInfo

    path = tmp_path / name
    path.mkdir(exist_ok=True)
    (path / "adapter_config.json").write_text(f'{{"r": {rank}}}')
    return VersionInfo(name, path, {"format": fmt})


def test_vllm_backend_leaves_room_on_the_gpu_for_the_services_other_users(vllm_backend):
    assert vllm_backend.llm.options["enable_lora"] is True
    assert vllm_backend.llm.options["gpu_memory_utilization"] < 0.9  # vLLM's default would take nearly all of it


def test_vllm_backend_serves_each_lora_version_under_one_stable_id(vllm_backend, tmp_path):
    assert vllm_backend.lora_request(_version(tmp_path, "policy-0001", "base")) is None
    first = vllm_backend.lora_request(_version(tmp_path, "policy-0002", "lora"))
    second = vllm_backend.lora_request(_version(tmp_path, "policy-0003", "lora"))
    assert (first.name, first.path) == ("policy-0002", str(tmp_path / "policy-0002"))
    assert first.int_id != second.int_id
    assert vllm_backend.lora_request(_version(tmp_path, "policy-0002", "lora")).int_id == first.int_id


def test_vllm_backend_refuses_what_vllm_cannot_serve(vllm_backend, tmp_path):
    with pytest.raises(PreconditionError, match="LoRA versions only"):
        vllm_backend.lora_request(_version(tmp_path, "policy-0002", "full"))
    with pytest.raises(PreconditionError, match="rank 128"):
        vllm_backend.lora_request(_version(tmp_path, "policy-0003", "lora", rank=128))


def test_vllm_backend_sends_token_ids_without_a_second_bos(vllm_backend, tmp_path):
    from services.policy.generation import Generated

    results = vllm_backend.generate(
        _version(tmp_path, "policy-0002", "lora"), ["hello"], 2, Sampling(max_new_tokens=8, seed=3), None
    )
    prompts, params, lora = vllm_backend.llm.calls[-1]
    assert prompts == [{"prompt_token_ids": [ord(c) for c in "<s>user: hello\nassistant:"]}]
    assert (params.n, params.max_tokens, params.seed, lora.name) == (2, 8, 3, "policy-0002")
    assert results == [[Generated("hi", len(prompts[0]["prompt_token_ids"]), 2, -1.5, "length")] * 2]
