"""How a (prompt, response) pair becomes token ids -- the same for scoring and training."""

from __future__ import annotations


def encode_pair(tokenizer, prompt: str, response: str, max_length: int) -> list[int]:
    """Token ids for one pair, at most `max_length` long.

    Chat models see the chat template; encoders with [CLS]/[SEP] see a text
    pair; other decoders see the texts joined and closed with EOS (their
    reward head reads the last token, so truncation keeps the end).
    """
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"][-max_length:]
    if tokenizer.sep_token is not None and tokenizer.cls_token is not None:
        return tokenizer(prompt, response, truncation=True, max_length=max_length)["input_ids"]
    text = f"{prompt}\n\n{response}{tokenizer.eos_token or ''}"
    return tokenizer(text)["input_ids"][-max_length:]
