"""Flags for generated profiles: empty, too short, repetitive, refusal. Used by ``llmkt profiles stats`` and
``--retry-flagged``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_REFUSAL = re.compile(
    r"\b(I'?m sorry|I am sorry|I cannot|I can'?t (help|assist|provide)|as an AI( language model)?|"
    r"I'?m (just )?an AI|I am unable|I'?m unable|cannot fulfill|not able to provide)\b", re.IGNORECASE)


@dataclass(frozen=True)
class QualityRules:
    min_words: int = 20
    max_repeat_ratio: float = 0.5  # share of repeated word 4-grams above which a text is "repetitive"


def repeat_ratio(text: str, n: int = 4) -> float:
    """Share of word n-grams that repeat an earlier n-gram (0 = none, close to 1 = a loop)."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def flags(text: str, rules: QualityRules = QualityRules()) -> list[str]:
    """Problems of one profile text, in a fixed order; an empty list means it looks fine."""
    out = []
    stripped = text.strip()
    if not stripped:
        return ["empty"]
    if len(re.findall(r"\w+", stripped)) < rules.min_words:
        out.append("too_short")
    if repeat_ratio(stripped) > rules.max_repeat_ratio:
        out.append("repetitive")
    if _REFUSAL.search(stripped[:300]):
        out.append("refusal")
    return out
