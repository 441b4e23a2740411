"""Titles in prompts and answers, and Hit@1 by normalised exact title match.

Parsing rule of an answer (documented in docs/allmrec.md), applied in order:

1. keep the first non-empty line, strip the chat's end marker and surrounding whitespace;
2. a leading list marker or label is dropped (``1.``, ``-``, ``*``, ``Answer:``, ``Recommendation:``);
3. a title in double quotes anywhere in the line wins over the rest of the line (the prompt quotes every title);
4. the result is normalised (:func:`normalise_title`: lower case, HTML entities decoded, punctuation to spaces,
   whitespace collapsed);
5. it is compared with the candidates' normalised titles: equal to exactly one is that item; no candidate equal is a
   miss; an empty answer counts as *unparseable* (a miss too, reported separately).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import numpy as np

_LABEL = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022]|(?:answer|recommendation|title|item)\s*:)\s*", re.IGNORECASE)
_QUOTED = re.compile(r'"([^"]+)"')
_PUNCT = re.compile(r"[^\w]+", re.UNICODE)


def normalise_title(title: str) -> str:
    """Lower case, HTML entities decoded, every run of non-word characters one space, stripped."""
    return _PUNCT.sub(" ", html.unescape(str(title)).lower()).strip()


def display_title(title: str, max_words: int | None = None) -> str:
    """A title as the prompt shows it: entities decoded, double quotes to single, cut to ``max_words`` words."""
    t = " ".join(html.unescape(str(title)).replace('"', "'").split())
    if max_words:
        t = " ".join(t.split()[:max_words])
    return t


def answer_text(raw: str, end_markers: tuple[str, ...] = ()) -> str:
    """Rules 1–3: the part of a generated answer that names the title (not yet normalised)."""
    text = raw
    for m in end_markers:
        if m and m in text:
            text = text[: text.index(m)]
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    while True:
        stripped = _LABEL.sub("", line, count=1)
        if stripped == line:
            break
        line = stripped
    quoted = _QUOTED.search(line)
    if quoted:
        return quoted.group(1).strip()
    return line.strip().strip("'\u201c\u201d").strip()


def parse_answer(raw: str, candidate_titles: list[str], end_markers: tuple[str, ...] = ()) -> int | None:
    """Index of the candidate an answer names (rules 1–5), None when it names none; -1 when it is unparseable."""
    ans = normalise_title(answer_text(raw, end_markers))
    if not ans:
        return -1
    hits = [i for i, t in enumerate(candidate_titles) if normalise_title(t) == ans]
    return hits[0] if len(hits) == 1 else None


@dataclass
class HitResult:
    hit_at_1: float
    n: int
    unparseable: int
    no_match: int
    per_user: np.ndarray  # (n,) 1.0 / 0.0

    @property
    def unparseable_share(self) -> float:
        return self.unparseable / max(1, self.n)

    def as_dict(self) -> dict:
        return {"Hit@1": self.hit_at_1, "n": self.n, "unparseable": self.unparseable,
                "unparseable_share": self.unparseable_share, "no_match": self.no_match}


def hit_at_1(answers: list[str], candidate_titles: list[list[str]], positive_index: list[int],
             end_markers: tuple[str, ...] = ()) -> HitResult:
    """Hit@1 of generated answers: answer ``u`` names candidate ``positive_index[u]`` of ``candidate_titles[u]``."""
    hits, bad, none = [], 0, 0
    for raw, titles, p in zip(answers, candidate_titles, positive_index, strict=True):
        k = parse_answer(raw, titles, end_markers)
        if k == -1:
            bad += 1
        elif k is None:
            none += 1
        hits.append(1.0 if k == p else 0.0)
    per = np.asarray(hits, np.float64)
    return HitResult(float(per.mean()) if len(per) else 0.0, len(per), bad, none, per)


def hit_at_1_of_scores(scores: np.ndarray, candidates: np.ndarray, positive: np.ndarray) -> HitResult:
    """Hit@1 of a model that scores items: ``scores (U, n_items + 1)`` or ``(U, n)`` over ``candidates (U, n)``;
    a tie at the top counts as a miss unless the positive is the only top item."""
    s = scores if scores.shape[1] == candidates.shape[1] else np.take_along_axis(scores, candidates, axis=1)
    top = s.max(axis=1, keepdims=True)
    at_top = s == top
    pos_col = candidates == positive[:, None]
    per = ((at_top & pos_col).any(1) & (at_top.sum(1) == 1)).astype(np.float64)
    return HitResult(float(per.mean()) if len(per) else 0.0, len(per), 0, 0, per)
