"""A tiny Llama and byte-level BPE tokenizer built from config in seconds, for tests and quick runs."""

from __future__ import annotations

from pathlib import Path

# Enough English to give the BPE merges something to learn; the model itself is random.
_CORPUS = """
The quick brown fox jumps over the lazy dog. A helpful answer is clear, kind and correct.
Thank you for asking! Here is a short explanation with an example. Please let me know if you need more.
I do not know. That is a stupid question. Go away. Maybe later, or never.
Water boils at one hundred degrees Celsius at sea level. The capital of France is Paris.
Write a poem about the sea. Explain how a rainbow forms. What is the best way to learn Python?
Good great excellent wonderful happy love nice bad awful terrible sad hate poor boring.
""".strip().splitlines()


def build_tiny_llama(out_dir: Path, *, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Write a random LlamaForCausalLM (hidden 64, 2 layers) and its tokenizer to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    special = ["<|pad|>", "<|bos|>", "<|eos|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        model_max_length=512,
    )
    tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(out_dir)
    return out_dir
