"""``template``: a profile written from computed statistics, no LLM. The control that shows whether an LLM adds
anything: top genres by count and by mean rating, eras, lowest-rated genres (movies); frequent title words and
ratings (products)."""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from llmkt.profiles.backends.base import Backend, Generation, GenerationSettings, Messages
from llmkt.profiles.history import UserHistory

_STOP = set("the a an and or of for with to in on by at from is new set pack oz ounce ml fl count inch".split())


def _share(counts: Counter, total: int, n: int) -> str:
    return ", ".join(f"{k} ({100 * v / total:.0f}%)" for k, v in counts.most_common(n)) or "none"


class TemplateBackend(Backend):
    model_id = "template:v1"
    uses_prompt = False

    def __init__(self, top: int = 3, min_count: int = 2):
        self.top = top
        self.min_count = min_count

    async def acomplete(self, messages: Messages, settings: GenerationSettings) -> Generation:  # never prompted
        raise NotImplementedError("the template backend writes from the history; it takes no prompt")

    def describe(self, history: UserHistory) -> Generation:
        df = history.items
        n = len(df)
        lines = [f"History: {n} interactions."]
        rated = "rating" in df.columns and df["rating"].notna().any()
        if rated:
            lines.append(f"Ratings: mean {df['rating'].mean():.2f}, "
                         f"{100 * (df['rating'] >= 4).mean():.0f}% rated 4 or 5, "
                         f"{100 * (df['rating'] <= 2).mean():.0f}% rated 1 or 2.")
        if "genres" in df.columns and df["genres"].notna().any():
            g = df.assign(genre=df["genres"].fillna("").str.split("|")).explode("genre")
            g = g[g["genre"].str.len() > 0]
            lines.append("Top genres by count: " + _share(Counter(g["genre"]), n, self.top) + ".")
            if rated:
                stats = g.groupby("genre")["rating"].agg(["mean", "size"])
                stats = stats[stats["size"] >= self.min_count].sort_values(["mean", "size"], ascending=[False, False])
                if len(stats):
                    best = ", ".join(f"{k} ({v:.1f})" for k, v in stats["mean"].head(self.top).items())
                    worst = ", ".join(f"{k} ({v:.1f})" for k, v in stats["mean"].tail(self.top)[::-1].items())
                    lines.append(f"Top genres by mean rating: {best}.")
                    lines.append(f"Lowest-rated genres: {worst}.")
        if "year" in df.columns and df["year"].notna().any():
            years = pd.to_numeric(df["year"], errors="coerce").dropna().astype(int)
            decades = Counter(f"{(y // 10) * 10}s" for y in years)
            lines.append("Eras: " + _share(decades, len(years), self.top) + ".")
        elif "title" in df.columns and df["title"].notna().any():
            words = Counter(w for t in df["title"].dropna() for w in re.findall(r"[a-z]{3,}", str(t).lower())
                            if w not in _STOP)
            lines.append("Frequent words in titles: " + ", ".join(w for w, _ in words.most_common(2 * self.top)) + ".")
        if n >= 4:
            half = n // 2
            if rated:
                early, late = df["rating"].iloc[:half].mean(), df["rating"].iloc[half:].mean()
                lines.append(f"Trend: mean rating {early:.2f} in the first half of the history, {late:.2f} in the second.")
        text = "\n".join(lines)
        return Generation(text, 0, 0, "stop")
