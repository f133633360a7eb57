"""The demo's built-in prompts: every topic in every form, for simulated runs (a real run reads `prompts_file`)."""

from __future__ import annotations

import random

TOPICS = [
    "the weather",
    "a recipe for soup",
    "learning Python",
    "the history of Rome",
    "how rainbows form",
    "saving money",
    "training for a marathon",
    "growing tomatoes",
    "writing a cover letter",
    "the solar system",
    "fixing a bike tire",
    "brewing coffee",
    "planning a trip to Japan",
    "caring for a cat",
    "public speaking",
    "reading more books",
    "the water cycle",
    "making bread",
    "choosing a laptop",
    "sleeping better",
]
BUILTIN_FORMS = [
    "Write a short, friendly note about {}.", "Tell me something interesting about {}.",
    "Give me one tip about {}.", "Describe {} in two sentences.", "What should a beginner know about {}?",
    "Explain {} to a friend.", "Share a fun fact about {}.", "Write a few encouraging words about {}.",
    "Give me a quick overview of {}.", "What is a common mistake with {}?", "Summarize what matters most about {}.",
]  # fmt: skip


def builtin_prompts() -> list[str]:
    """Every topic in every form, in a fixed shuffled order: held-out and annotated prompts mix topics and forms."""
    prompts = [form.format(topic) for topic in TOPICS for form in BUILTIN_FORMS]
    random.Random(0).shuffle(prompts)
    return prompts
