"""The contract every profile writer meets: chat messages in, text and token counts out."""

from __future__ import annotations

import asyncio
from abc import ABC
from dataclasses import asdict, dataclass, field
from typing import Any

from llmkt.errors import LLMKTError
from llmkt.profiles.history import UserHistory

Messages = list[dict[str, str]]


class BackendError(LLMKTError, RuntimeError):
    """A backend could not produce a completion (after its retries)."""


@dataclass(frozen=True)
class GenerationSettings:
    max_tokens: int = 256
    temperature: float = 0.2
    top_p: float = 0.9
    repeat_penalty: float = 1.1
    seed: int = 0
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """``complete`` (blocking) or ``acomplete`` (async); implement at least one of them.

    ``model_id`` goes into the store key: two different models never share a profile.
    ``uses_prompt = False`` marks a backend that writes profiles from the history itself (``template``).
    """

    model_id: str = "unknown"
    uses_prompt: bool = True

    def complete(self, messages: Messages, settings: GenerationSettings) -> Generation:
        return asyncio.run(self.acomplete(messages, settings))

    async def acomplete(self, messages: Messages, settings: GenerationSettings) -> Generation:
        return self.complete(messages, settings)

    def describe(self, history: UserHistory) -> Generation:  # only for uses_prompt = False
        raise NotImplementedError

    def count_tokens(self, messages: Messages) -> int:
        """Tokens of the rendered prompt; the default is a rough 4 characters per token."""
        return sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
