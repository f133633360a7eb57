from services.proto.rlhf.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_p", "max_new_tokens", "seed")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., max_new_tokens: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("prompts", "n", "sampling", "version")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedScalarFieldContainer[str]
    n: int
    sampling: SamplingParams
    version: str
    def __init__(self, prompts: _Optional[_Iterable[str]] = ..., n: _Optional[int] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., version: _Optional[str] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("text", "prompt_tokens", "completion_tokens", "logprob_sum", "finish_reason")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_SUM_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    text: str
    prompt_tokens: int
    completion_tokens: int
    logprob_sum: float
    finish_reason: str
    def __init__(self, text: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., logprob_sum: _Optional[float] = ..., finish_reason: _Optional[str] = ...) -> None: ...

class PromptCompletions(_message.Message):
    __slots__ = ("completions",)
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    def __init__(self, completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("results", "version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PromptCompletions]
    version: str
    def __init__(self, results: _Optional[_Iterable[_Union[PromptCompletions, _Mapping]]] = ..., version: _Optional[str] = ...) -> None: ...

class PolicyTrainConfig(_message.Message):
    __slots__ = ("method", "max_steps", "learning_rate", "prompts_per_step", "num_generations", "max_new_tokens", "temperature", "beta", "use_lora", "lora_r", "lora_alpha", "seed", "save_steps", "init_version", "promote", "epochs", "target_kl", "conservative_lambda")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_PER_STEP_FIELD_NUMBER: _ClassVar[int]
    NUM_GENERATIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    USE_LORA_FIELD_NUMBER: _ClassVar[int]
    LORA_R_FIELD_NUMBER: _ClassVar[int]
    LORA_ALPHA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAVE_STEPS_FIELD_NUMBER: _ClassVar[int]
    INIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TARGET_KL_FIELD_NUMBER: _ClassVar[int]
    CONSERVATIVE_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    method: str
    max_steps: int
    learning_rate: float
    prompts_per_step: int
    num_generations: int
    max_new_tokens: int
    temperature: float
    beta: float
    use_lora: bool
    lora_r: int
    lora_alpha: float
    seed: int
    save_steps: int
    init_version: str
    promote: bool
    epochs: int
    target_kl: float
    conservative_lambda: float
    def __init__(self, method: _Optional[str] = ..., max_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., prompts_per_step: _Optional[int] = ..., num_generations: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., beta: _Optional[float] = ..., use_lora: _Optional[bool] = ..., lora_r: _Optional[int] = ..., lora_alpha: _Optional[float] = ..., seed: _Optional[int] = ..., save_steps: _Optional[int] = ..., init_version: _Optional[str] = ..., promote: _Optional[bool] = ..., epochs: _Optional[int] = ..., target_kl: _Optional[float] = ..., conservative_lambda: _Optional[float] = ...) -> None: ...

class PolicyTrainRequest(_message.Message):
    __slots__ = ("prompts", "rankings", "config")
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    RANKINGS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    prompts: _containers.RepeatedScalarFieldContainer[str]
    rankings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Ranking]
    config: PolicyTrainConfig
    def __init__(self, prompts: _Optional[_Iterable[str]] = ..., rankings: _Optional[_Iterable[_Union[_common_pb2.Ranking, _Mapping]]] = ..., config: _Optional[_Union[PolicyTrainConfig, _Mapping]] = ...) -> None: ...

class PolicyTrainProgress(_message.Message):
    __slots__ = ("step", "total_steps", "loss", "reward_mean", "reward_std", "kl", "step_seconds", "resumed")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    REWARD_MEAN_FIELD_NUMBER: _ClassVar[int]
    REWARD_STD_FIELD_NUMBER: _ClassVar[int]
    KL_FIELD_NUMBER: _ClassVar[int]
    STEP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    loss: float
    reward_mean: float
    reward_std: float
    kl: float
    step_seconds: float
    resumed: bool
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., reward_mean: _Optional[float] = ..., reward_std: _Optional[float] = ..., kl: _Optional[float] = ..., step_seconds: _Optional[float] = ..., resumed: _Optional[bool] = ...) -> None: ...

class PolicyTrainEvent(_message.Message):
    __slots__ = ("progress", "version")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    progress: PolicyTrainProgress
    version: _common_pb2.ModelVersion
    def __init__(self, progress: _Optional[_Union[PolicyTrainProgress, _Mapping]] = ..., version: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("candidate", "baseline", "prompts", "sampling")
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    candidate: str
    baseline: str
    prompts: _containers.RepeatedScalarFieldContainer[str]
    sampling: SamplingParams
    def __init__(self, candidate: _Optional[str] = ..., baseline: _Optional[str] = ..., prompts: _Optional[_Iterable[str]] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("candidate_mean_reward", "baseline_mean_reward", "win_rate", "kl_to_reference", "has_gold", "gold_win_rate", "candidate_mean_gold", "baseline_mean_gold", "prompts", "reward_version")
    CANDIDATE_MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    BASELINE_MEAN_REWARD_FIELD_NUMBER: _ClassVar[int]
    WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    KL_TO_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    HAS_GOLD_FIELD_NUMBER: _ClassVar[int]
    GOLD_WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_MEAN_GOLD_FIELD_NUMBER: _ClassVar[int]
    BASELINE_MEAN_GOLD_FIELD_NUMBER: _ClassVar[int]
    PROMPTS_FIELD_NUMBER: _ClassVar[int]
    REWARD_VERSION_FIELD_NUMBER: _ClassVar[int]
    candidate_mean_reward: float
    baseline_mean_reward: float
    win_rate: float
    kl_to_reference: float
    has_gold: bool
    gold_win_rate: float
    candidate_mean_gold: float
    baseline_mean_gold: float
    prompts: int
    reward_version: str
    def __init__(self, candidate_mean_reward: _Optional[float] = ..., baseline_mean_reward: _Optional[float] = ..., win_rate: _Optional[float] = ..., kl_to_reference: _Optional[float] = ..., has_gold: _Optional[bool] = ..., gold_win_rate: _Optional[float] = ..., candidate_mean_gold: _Optional[float] = ..., baseline_mean_gold: _Optional[float] = ..., prompts: _Optional[int] = ..., reward_version: _Optional[str] = ...) -> None: ...

class GetPolicyInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("active_version", "base_model", "generation_backend", "device", "max_prompts", "max_n", "max_new_tokens", "max_prompt_chars", "training", "reward_target")
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    GENERATION_BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    MAX_N_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_CHARS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    REWARD_TARGET_FIELD_NUMBER: _ClassVar[int]
    active_version: str
    base_model: str
    generation_backend: str
    device: str
    max_prompts: int
    max_n: int
    max_new_tokens: int
    max_prompt_chars: int
    training: bool
    reward_target: str
    def __init__(self, active_version: _Optional[str] = ..., base_model: _Optional[str] = ..., generation_backend: _Optional[str] = ..., device: _Optional[str] = ..., max_prompts: _Optional[int] = ..., max_n: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., max_prompt_chars: _Optional[int] = ..., training: _Optional[bool] = ..., reward_target: _Optional[str] = ...) -> None: ...
