"""Prompts as Jinja2 templates, rendered in a sandbox with strict undefined variables.

Built-in styles (``src/llmkt/profiles/templates``): ``structured`` (short profile: preferences with shares,
behavioural insights, engagement trends), ``llmkt_movie`` (LLM-KT's five parts), ``long`` (five paragraphs).
A user's own template is any ``.j2`` file; it may ``{% extends "_frame.j2" %}`` to get the chunk/aggregate modes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from jinja2.sandbox import SandboxedEnvironment

from llmkt.errors import ConfigError
from llmkt.profiles.history import Domain, UserHistory

TEMPLATE_DIR = Path(__file__).parent / "templates"
BUILTIN_STYLES = ("structured", "llmkt_movie", "long")
DEFAULT_SYSTEM = ("You are an expert in recommender systems. You read a user's history and write a concise, "
                  "factual profile of their taste. You never invent items the user did not interact with.")

ITEM_LINES: dict[str, str] = {
    "movie": ('{{ title or "movie " ~ item_id }}{% if year %} ({{ year }}){% endif %}'
              '{% if genres %} | {{ genres | replace("|", ", ") }}{% endif %}'
              '{% if rating is not none %} | rated {{ rating | round | int }}/5{% endif %}'),
    "product": ('{{ title or "product " ~ item_id }}'
                '{% if rating is not none %} | rated {{ rating | round | int }}/5{% endif %}'),
    "generic": 'item {{ item_id }}{% if rating is not none %} | rated {{ rating | round | int }}/5{% endif %}',
}


def _clean(v: Any) -> Any:
    """Missing values (None, NaN, pd.NA, NaT) -> None; numpy scalars -> Python scalars."""
    if pd.api.types.is_scalar(v) and pd.isna(v):
        return None
    return v.item() if hasattr(v, "item") else v


@dataclass
class PromptTemplate:
    """A loaded style plus the item-line template and system message; ``hash`` identifies all three."""

    style: str
    system: str
    item_line: str
    env: SandboxedEnvironment
    template: jinja2.Template
    line: jinja2.Template
    source: str

    @classmethod
    def load(cls, style: str, domain: Domain, system: str | None = None,
             item_line: str | None = None) -> "PromptTemplate":
        search = [str(TEMPLATE_DIR)]
        name = style
        if style not in BUILTIN_STYLES:
            path = Path(style).expanduser()
            if not path.is_file():
                raise ConfigError(f"prompt.template: {style!r} is neither a built-in style {list(BUILTIN_STYLES)} "
                                  "nor an existing template file.")
            search.insert(0, str(path.parent.resolve()))
            name = path.name
        else:
            name = f"{style}.j2"
        env = SandboxedEnvironment(loader=jinja2.FileSystemLoader(search), undefined=jinja2.StrictUndefined,
                                   keep_trailing_newline=False, autoescape=False)
        try:
            template = env.get_template(name)
            line = env.from_string(item_line or ITEM_LINES[domain])
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"prompt template {e.filename or 'item_line'}: syntax error on line {e.lineno}: "
                              f"{e.message}") from None
        # Hash the sources the template can reach (itself and the shared frame) so edits change the key.
        sources = [Path(template.filename).read_text()] if template.filename else []
        frame = TEMPLATE_DIR / "_frame.j2"
        if "_frame.j2" in (sources[0] if sources else ""):
            sources.append(frame.read_text())
        return cls(style, system if system is not None else DEFAULT_SYSTEM, item_line or ITEM_LINES[domain], env,
                   template, line, "\n".join(sources))

    def item_dicts(self, history: UserHistory) -> list[dict[str, Any]]:
        rows = []
        for rec in history.items.to_dict("records"):
            d = {k: _clean(v) for k, v in rec.items()}
            d.setdefault("rating", None)
            d.setdefault("title", None)
            d.setdefault("year", None)
            d.setdefault("genres", None)
            d["line"] = self.line.render(**d).strip()
            rows.append(d)
        return rows

    def render(self, mode: str, *, history: UserHistory | None = None, n_total: int = 0, domain: str = "generic",
               profiles: list[str] | None = None, previous: str | None = None) -> list[dict[str, str]]:
        """Chat messages for one call: ``mode`` is "items", "aggregate" or "update"."""
        items = self.item_dicts(history) if history is not None else []
        ctx = {"mode": mode, "items": items, "n_items": len(items), "n_total": max(n_total, len(items)),
               "domain": domain, "user": dict(history.user) if history is not None else {},
               "profiles": profiles or [], "previous": previous or ""}
        try:
            text = self.template.render(**ctx).strip()
        except jinja2.UndefinedError as e:
            raise ConfigError(f"prompt template {self.style!r}: {e.message}; available variables: "
                              f"{sorted(ctx)}") from None
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": text}]

    def instructions(self, domain: str = "generic") -> str:
        """What every prompt of this template says besides the user's items (system message and the three modes'
        texts without items): an answer that repeats it is flagged ``echo``."""
        texts = [self.system]
        for mode in ("items", "aggregate", "update"):
            texts += [m["content"] for m in self.render(mode, domain=domain) if m["role"] == "user"]
        return "\n".join(texts)

    def hash(self, extra: dict[str, Any]) -> str:
        payload = {"system": self.system, "template": self.source, "item_line": self.item_line, **extra}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]
