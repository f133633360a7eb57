"""Sampling completions: the transformers backend (default) and vLLM (when installed and asked for)."""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from services.core.errors import DeadlineError, InvalidRequestError, PreconditionError
from services.models.registry import VersionInfo
from services.policy.policy_model import PolicyModel, format_prompt
from services.policy.sampling import Sampling

if TYPE_CHECKING:
    from vllm.lora.request import LoRARequest

BACKENDS = ("transformers", "vllm")


@dataclass(frozen=True)
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    logprob_sum: float
    finish_reason: str  # "stop" | "length"


class GenerationBackend(Protocol):
    name: str

    def generate(
        self, version: VersionInfo, prompts: list[str], n: int, sampling: Sampling, deadline: float | None
    ) -> list[list[Generated]]:
        """n completions for each prompt, in order; raises DeadlineError when `deadline` (monotonic) passes."""
        ...


class _DeadlineStop:
    """Stops generation once the caller's deadline has passed (checked between tokens)."""

    def __init__(self, deadline: float | None):
        self.deadline = deadline
        self.hit = False

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        self.hit = self.deadline is not None and time.monotonic() >= self.deadline
        return torch.full((input_ids.shape[0],), self.hit, dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    name = "transformers"

    def __init__(self, policy: PolicyModel):
        self.policy = policy

    def generate(
        self, version: VersionInfo, prompts: list[str], n: int, sampling: Sampling, deadline: float | None
    ) -> list[list[Generated]]:
        from transformers import StoppingCriteriaList

        tokenizer = self.policy.tokenizer
        texts = [format_prompt(tokenizer, p) for p in prompts]
        chat = bool(getattr(tokenizer, "chat_template", None))
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
        encoded = encoded.to(self.policy.device)
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        stop = _DeadlineStop(deadline)
        sample = sampling.temperature > 0
        options = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": n,
            "return_dict_in_generate": True,
            "output_logits": True,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "stopping_criteria": StoppingCriteriaList([stop]),
        }
        if sample:
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        # The adapter loads (if new) outside inference mode: peft marks its weights trainable.
        with self.policy.lock, self.policy.using(version) as model, torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            out = model.generate(**encoded, **options)
        if stop.hit:
            raise DeadlineError("deadline passed during generation")
        return self._decode(out, encoded["input_ids"].shape[1], prompt_tokens, len(prompts), n)

    @torch.inference_mode()
    def _decode(
        self, out, prompt_width: int, prompt_tokens: list[int], n_prompts: int, n: int
    ) -> list[list[Generated]]:
        tokenizer = self.policy.tokenizer
        completions = out.sequences[:, prompt_width:]
        finished = torch.zeros(completions.shape[0], dtype=torch.bool, device=completions.device)
        lengths = torch.zeros_like(finished, dtype=torch.long)
        logprob_sums = torch.zeros(completions.shape[0], dtype=torch.float64, device=completions.device)
        # Log-probabilities under the model itself (raw logits, temperature 1), up to and including EOS.
        for step, logits in enumerate(out.logits):
            tokens = completions[:, step]
            active = ~finished
            step_logprobs = torch.log_softmax(logits.float(), dim=-1).gather(1, tokens[:, None]).squeeze(1)
            logprob_sums += torch.where(active, step_logprobs, 0.0).double()
            lengths += active.long()
            finished |= tokens == tokenizer.eos_token_id
        results: list[list[Generated]] = []
        for i in range(n_prompts):
            row = []
            for j in range(i * n, (i + 1) * n):
                length = int(lengths[j])
                ids = completions[j, :length].tolist()
                row.append(
                    Generated(
                        text=tokenizer.decode(ids, skip_special_tokens=True),
                        prompt_tokens=int(prompt_tokens[i]),
                        completion_tokens=length,
                        logprob_sum=float(logprob_sums[j]),
                        finish_reason="stop" if bool(finished[j]) else "length",
                    )
                )
            results.append(row)
        return results


class VllmBackend:
    """vLLM engine over the same base checkpoint; LoRA versions as LoRARequests."""

    name = "vllm"

    def __init__(self, base_path: Path, tokenizer, max_lora_rank: int = 64, gpu_memory_utilization: float = 0.5):
        from vllm import LLM

        self.tokenizer = tokenizer
        self.max_lora_rank = max_lora_rank
        # vLLM reserves this share of the GPU up front; its default (0.9) assumes a GPU of its own, but this
        # service's transformers copy (Promote, Evaluate's log-probabilities) and its training worker share it.
        self.llm = LLM(
            model=str(base_path),
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        self._lora_ids: dict[str, int] = {}

    def lora_request(self, version: VersionInfo) -> LoRARequest | None:
        """None for the base; for a LoRA version a LoRARequest whose id stays the same for that version."""
        from vllm.lora.request import LoRARequest

        if version.format == "full":
            raise PreconditionError("the vllm backend serves the base model and LoRA versions only")
        if version.format != "lora":
            return None
        rank = json.loads((version.path / "adapter_config.json").read_text())["r"]
        if rank > self.max_lora_rank:  # vLLM would fail the request with an internal error
            raise PreconditionError(
                f"{version.id} has LoRA rank {rank}; the vllm backend serves ranks up to {self.max_lora_rank}"
            )
        lora_id = self._lora_ids.setdefault(version.id, len(self._lora_ids) + 1)
        return LoRARequest(version.id, lora_id, str(version.path))

    def _token_ids(self, prompt: str) -> list[int]:
        """The prompt's token ids, encoded as the transformers backend encodes them."""
        # A chat template's text already holds its special tokens: vLLM's own tokenization would add them again.
        chat = bool(getattr(self.tokenizer, "chat_template", None))
        return self.tokenizer(format_prompt(self.tokenizer, prompt), add_special_tokens=not chat)["input_ids"]

    def generate(
        self, version: VersionInfo, prompts: list[str], n: int, sampling: Sampling, deadline: float | None
    ) -> list[list[Generated]]:
        from vllm import SamplingParams

        lora = self.lora_request(version)
        params = SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
            logprobs=0,
        )
        encoded = [{"prompt_token_ids": self._token_ids(p)} for p in prompts]
        outputs = self.llm.generate(encoded, params, lora_request=lora, use_tqdm=False)
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlineError("deadline passed during generation")
        return [
            [
                Generated(
                    text=c.text,
                    prompt_tokens=len(o.prompt_token_ids),
                    completion_tokens=len(c.token_ids),
                    logprob_sum=float(c.cumulative_logprob or 0.0),
                    finish_reason="stop" if c.finish_reason == "stop" else "length",
                )
                for c in o.outputs
            ]
            for o in outputs
        ]


def select_backend(requested: str, *, vllm_installed: bool | None = None, cuda: bool | None = None) -> str:
    """The backend to build: vLLM only when asked for and usable, transformers otherwise."""
    if requested not in BACKENDS:
        raise InvalidRequestError(f"unknown generation backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    if requested == "transformers":
        return "transformers"
    if vllm_installed is None:
        vllm_installed = importlib.util.find_spec("vllm") is not None
    if cuda is None:
        cuda = torch.cuda.is_available()
    if not vllm_installed:
        raise PreconditionError("--generation-backend vllm needs the vllm package: pip install vllm")
    if not cuda:
        raise PreconditionError("--generation-backend vllm needs a CUDA GPU; use transformers on CPU")
    return "vllm"
