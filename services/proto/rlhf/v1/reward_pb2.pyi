from services.proto.rlhf.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScoreItem(_message.Message):
    __slots__ = ("prompt", "response")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    response: str
    def __init__(self, prompt: _Optional[str] = ..., response: _Optional[str] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("items", "version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoreItem]
    version: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoreItem, _Mapping]]] = ..., version: _Optional[str] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("scores", "model_version", "spreads")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPREADS_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    model_version: str
    spreads: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., model_version: _Optional[str] = ..., spreads: _Optional[_Iterable[float]] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("prompt", "candidates", "version")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    candidates: _containers.RepeatedScalarFieldContainer[str]
    version: str
    def __init__(self, prompt: _Optional[str] = ..., candidates: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("scores", "order", "pairwise_probabilities", "model_version", "spreads")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PAIRWISE_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPREADS_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    order: _containers.RepeatedScalarFieldContainer[int]
    pairwise_probabilities: _containers.RepeatedScalarFieldContainer[float]
    model_version: str
    spreads: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., order: _Optional[_Iterable[int]] = ..., pairwise_probabilities: _Optional[_Iterable[float]] = ..., model_version: _Optional[str] = ..., spreads: _Optional[_Iterable[float]] = ...) -> None: ...

class TrainConfig(_message.Message):
    __slots__ = ("epochs", "learning_rate", "batch_size", "heldout_fraction", "seed", "use_lora", "lora_r", "lora_alpha", "margin_per_rank", "max_length", "init_version", "promote", "loss", "ensemble_size")
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    HELDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    USE_LORA_FIELD_NUMBER: _ClassVar[int]
    LORA_R_FIELD_NUMBER: _ClassVar[int]
    LORA_ALPHA_FIELD_NUMBER: _ClassVar[int]
    MARGIN_PER_RANK_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    INIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROMOTE_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    epochs: int
    learning_rate: float
    batch_size: int
    heldout_fraction: float
    seed: int
    use_lora: bool
    lora_r: int
    lora_alpha: float
    margin_per_rank: float
    max_length: int
    init_version: str
    promote: bool
    loss: str
    ensemble_size: int
    def __init__(self, epochs: _Optional[int] = ..., learning_rate: _Optional[float] = ..., batch_size: _Optional[int] = ..., heldout_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., use_lora: _Optional[bool] = ..., lora_r: _Optional[int] = ..., lora_alpha: _Optional[float] = ..., margin_per_rank: _Optional[float] = ..., max_length: _Optional[int] = ..., init_version: _Optional[str] = ..., promote: _Optional[bool] = ..., loss: _Optional[str] = ..., ensemble_size: _Optional[int] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("rankings", "config", "heldout_rankings")
    RANKINGS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    HELDOUT_RANKINGS_FIELD_NUMBER: _ClassVar[int]
    rankings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Ranking]
    config: TrainConfig
    heldout_rankings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Ranking]
    def __init__(self, rankings: _Optional[_Iterable[_Union[_common_pb2.Ranking, _Mapping]]] = ..., config: _Optional[_Union[TrainConfig, _Mapping]] = ..., heldout_rankings: _Optional[_Iterable[_Union[_common_pb2.Ranking, _Mapping]]] = ...) -> None: ...

class TrainProgress(_message.Message):
    __slots__ = ("step", "total_steps", "epoch", "loss", "accuracy")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    epoch: float
    loss: float
    accuracy: float
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., epoch: _Optional[float] = ..., loss: _Optional[float] = ..., accuracy: _Optional[float] = ...) -> None: ...

class TrainEvaluation(_message.Message):
    __slots__ = ("heldout_accuracy", "heldout_pairs", "heldout_prompts", "train_pairs", "train_prompts")
    HELDOUT_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    HELDOUT_PAIRS_FIELD_NUMBER: _ClassVar[int]
    HELDOUT_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_PAIRS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_PROMPTS_FIELD_NUMBER: _ClassVar[int]
    heldout_accuracy: float
    heldout_pairs: int
    heldout_prompts: int
    train_pairs: int
    train_prompts: int
    def __init__(self, heldout_accuracy: _Optional[float] = ..., heldout_pairs: _Optional[int] = ..., heldout_prompts: _Optional[int] = ..., train_pairs: _Optional[int] = ..., train_prompts: _Optional[int] = ...) -> None: ...

class TrainEvent(_message.Message):
    __slots__ = ("progress", "evaluation", "version")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    progress: TrainProgress
    evaluation: TrainEvaluation
    version: _common_pb2.ModelVersion
    def __init__(self, progress: _Optional[_Union[TrainProgress, _Mapping]] = ..., evaluation: _Optional[_Union[TrainEvaluation, _Mapping]] = ..., version: _Optional[_Union[_common_pb2.ModelVersion, _Mapping]] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RewardInfo(_message.Message):
    __slots__ = ("active_version", "base_model", "architecture", "max_batch", "max_wait_ms", "max_queue", "max_items_per_request", "max_text_chars", "max_length_tokens", "training", "ensemble_size", "serving_version", "replica_id")
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_ITEMS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    ENSEMBLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    active_version: str
    base_model: str
    architecture: str
    max_batch: int
    max_wait_ms: float
    max_queue: int
    max_items_per_request: int
    max_text_chars: int
    max_length_tokens: int
    training: bool
    ensemble_size: int
    serving_version: str
    replica_id: str
    def __init__(self, active_version: _Optional[str] = ..., base_model: _Optional[str] = ..., architecture: _Optional[str] = ..., max_batch: _Optional[int] = ..., max_wait_ms: _Optional[float] = ..., max_queue: _Optional[int] = ..., max_items_per_request: _Optional[int] = ..., max_text_chars: _Optional[int] = ..., max_length_tokens: _Optional[int] = ..., training: _Optional[bool] = ..., ensemble_size: _Optional[int] = ..., serving_version: _Optional[str] = ..., replica_id: _Optional[str] = ...) -> None: ...
