"""Flags for generated profiles: empty, too short, repetitive, refusal, echo (the prompt's instructions copied
instead of answered). Used by ``llmkt profiles stats`` and ``--retry-flagged``."""

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
    max_echo_ratio: float = 0.8  # share of a sentence's word 4-grams found in the instructions: an echoed sentence
    max_echo_share: float = 0.25  # share of the text's words in echoed sentences above which a text is "echo"


def _grams(text: str, n: int = 4) -> list[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def repeat_ratio(text: str, n: int = 4) -> float:
    """Share of word n-grams that repeat an earlier n-gram (0 = none, close to 1 = a loop)."""
    grams = _grams(text, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def echoed_sentences(text: str, instructions: str, max_ratio: float = 0.8, min_words: int = 8) -> list[str]:
    """Sentences of ``text`` (of at least ``min_words`` words) whose word 4-grams come from ``instructions`` for
    more than ``max_ratio`` of them: the model copied the format description instead of filling it in."""
    known = set(_grams(instructions))
    if not known:
        return []
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", text):
        grams = _grams(sentence)
        if len(grams) >= min_words - 3 and sum(g in known for g in grams) / len(grams) > max_ratio:
            out.append(sentence.strip())
    return out


def flags(text: str, rules: QualityRules = QualityRules(), instructions: str = "") -> list[str]:
    """Problems of one profile text, in a fixed order; an empty list means it looks fine. ``instructions``: the
    prompt without the user's items (``PromptTemplate.instructions``), for the ``echo`` check."""
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
    if instructions:
        echoed = sum(len(re.findall(r"\w+", x)) for x in echoed_sentences(stripped, instructions, rules.max_echo_ratio))
        if echoed > rules.max_echo_share * len(re.findall(r"\w+", stripped)):
            out.append("echo")
    return out
