"""A-LLMRec's prompt: the last history items and the candidates, each as a quoted title followed by its embedding
token, and the user representation token.

A prompt is text with :data:`MARKER` where a soft token goes, plus the list of :class:`Slot` s those markers stand
for, in order. The LLM-only ablation (TALLRec-like) renders the same sentence without any marker.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmkt.errors import ConfigError

MARKER = "\u27e6emb\u27e7"  # never produced by a tokenizer's normal text; split on before tokenising


@dataclass(frozen=True)
class Slot:
    """A soft token: ``kind`` ``user`` (row ``index`` of the batch's user vectors) or ``item`` (internal item id)."""

    kind: str
    index: int


@dataclass(frozen=True)
class Template:
    history: str
    user: str
    candidates: str
    answer: str
    item: str = '"{title}"{emb}'
    sep: str = ", "


_DOMAIN = {
    "product": ("This user has made a series of purchases in the following order: {history}. ",
                "Based on this sequence of purchases, generate user representation token: {user}. ",
                "Choose one \"next\" product to recommend from the following items: {candidates}. ",
                "Answer with the title of the recommended item only. The recommendation is"),
    "movie": ("This user has watched the following movies in this order: {history}. ",
              "Based on this sequence, generate user representation token: {user}. ",
              "Choose one \"next\" movie to recommend from the following movies: {candidates}. ",
              "Answer with the title of the recommended movie only. The recommendation is"),
}


def default_template(domain: str = "product") -> Template:
    if domain not in _DOMAIN:
        raise ConfigError(f"allmrec.prompt.domain: expected one of {sorted(_DOMAIN)}, got {domain!r}.")
    return Template(*_DOMAIN[domain])


def render(template: Template, history_titles: list[str], history_iids: list[int], cand_titles: list[str],
           cand_iids: list[int], user_row: int, *, use_cf: bool = True) -> tuple[str, list[Slot]]:
    """``(text, slots)``: text with one :data:`MARKER` per slot. ``use_cf=False``: no markers and no user sentence
    (the LLM-only ablation)."""
    slots: list[Slot] = []

    def items(titles: list[str], iids: list[int]) -> str:
        parts = []
        for t, i in zip(titles, iids, strict=True):
            parts.append(template.item.format(title=t, emb=(" " + MARKER) if use_cf else ""))
            if use_cf:
                slots.append(Slot("item", int(i)))
        return template.sep.join(parts)

    text = template.history.format(history=items(history_titles, history_iids))
    if use_cf:
        text += template.user.format(user=MARKER)
        slots.append(Slot("user", user_row))
    text += template.candidates.format(candidates=items(cand_titles, cand_iids))
    text += template.answer
    return text, slots


def text_of(text: str) -> str:
    """The prompt as a person reads it (markers shown as ``[emb]``)."""
    return text.replace(MARKER, "[emb]")
