"""The base causal LM and the versions served from it (LoRA adapters, or full checkpoints)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from services.models.loading import check_weights
from services.models.registry import VersionInfo

log = logging.getLogger(__name__)


def pick_device() -> torch.device:
    """The GPU when there is one: services use it without being told."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_causal_lm(path: Path, device: torch.device, *, trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_weights(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    ).to(device)
    model.eval()
    return model, tokenizer


def format_prompt(tokenizer, prompt: str) -> str:
    """The text the model continues: the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


class PolicyModel:
    """Base weights loaded once; LoRA versions become named adapters, full versions separate models.

    `lock` serialises use of the shared model: switching adapters while another
    thread generates would mix versions.
    """

    def __init__(self, base_path: Path, device: torch.device | None = None, trust_remote_code: bool = False):
        self.device = device or pick_device()
        self.trust_remote_code = trust_remote_code
        self.base, self.tokenizer = load_causal_lm(base_path, self.device, trust_remote_code=trust_remote_code)
        self._peft = None  # PeftModel wrapping self.base once the first adapter loads
        self._full: dict[str, torch.nn.Module] = {}
        self.lock = threading.Lock()

    def _ensure_loaded(self, version: VersionInfo) -> None:
        kind = version.metadata.get("format")
        if kind == "lora" and (self._peft is None or version.id not in self._peft.peft_config):
            from peft import PeftModel

            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.base, version.path, adapter_name=version.id)
            else:
                self._peft.load_adapter(version.path, adapter_name=version.id)
            self._peft.eval()
        elif kind == "full" and version.id not in self._full:
            self._full[version.id], _ = load_causal_lm(
                version.path, self.device, trust_remote_code=self.trust_remote_code
            )

    @contextlib.contextmanager
    def using(self, version: VersionInfo) -> Iterator[torch.nn.Module]:
        """The model of `version` (call with `lock` held): the base, an adapter, or a full checkpoint."""
        self._ensure_loaded(version)
        kind = version.metadata.get("format")
        if kind == "full":
            yield self._full[version.id]
        elif kind == "lora":
            self._peft.set_adapter(version.id)
            yield self._peft
        elif self._peft is not None:
            with self._peft.disable_adapter():
                yield self._peft
        else:
            yield self.base


@torch.inference_mode()
def completion_logprobs(model, tokenizer, prompts: list[str], completions: list[str]) -> list[float]:
    """Summed log-probability of each completion after its (formatted) prompt, by teacher forcing."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    device = next(model.parameters()).device
    sums = []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt_ids = tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=not chat)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        if not completion_ids:
            sums.append(0.0)
            continue
        ids = torch.tensor([prompt_ids + completion_ids], device=device)
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()
        targets = ids[0, len(prompt_ids) :, None]
        sums.append(float(torch.log_softmax(logits, dim=-1).gather(1, targets).sum()))
    return sums
