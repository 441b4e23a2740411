"""Stage 2 of A-LLMRec: a frozen causal LM reads soft tokens made by two trainable projections.

``user_proj`` maps the frozen CF model's user representation ``(B, D)`` and ``item_proj`` the stage-1 joint item
embeddings ``(N, latent)`` into the LLM's token-embedding space ``(., H)``. A prompt (:mod:`.prompt`) is split at its
markers; text pieces go through the LLM's own token embeddings, each marker is replaced by its projected vector.
The target (the next item's title and the end-of-sequence token) is the only part with labels. Only the projections
have ``requires_grad``; :func:`~.alignment.state_hash` of ``llm`` before and after training proves it unchanged.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from llmkt.baselines.allmrec.alignment import freeze
from llmkt.baselines.allmrec.prompt import MARKER, Slot


@dataclass
class PromptExample:
    text: str  # with MARKER where a soft token goes
    slots: list[Slot]
    target: str | None = None  # the answer to learn (training); None when generating


@dataclass
class Assembled:
    inputs_embeds: torch.Tensor  # (B, T, H), left-padded
    attention_mask: torch.Tensor  # (B, T)
    position_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor | None  # (B, T), -100 outside the target
    slot_positions: list[list[int]]  # per example, the positions of its soft tokens, in slot order


def _mlp(d_in: int, hidden: int, d_out: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.LayerNorm(hidden), act, nn.Linear(hidden, d_out))


class SoftPromptLM(nn.Module):
    """``llm``: a Hugging Face causal LM (frozen here); ``tokenizer`` its tokenizer; ``cf_dim`` the CF user
    representation's width, ``latent`` stage 1's latent width. ``chat``: wrap the prompt in the tokenizer's chat
    template (instruct models)."""

    def __init__(self, llm: nn.Module, tokenizer, cf_dim: int, latent: int = 128, *, chat: bool = True):
        super().__init__()
        self.llm = freeze(llm)
        self.tokenizer = tokenizer
        hidden = int(llm.get_input_embeddings().weight.shape[1])
        self.hidden = hidden
        self.user_proj = _mlp(cf_dim, hidden, hidden, nn.LeakyReLU())
        self.item_proj = _mlp(latent, hidden, hidden, nn.GELU())
        self.chat = chat and getattr(tokenizer, "chat_template", None) is not None
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the LLM's tokenizer has no eos_token_id: the target could not end.")
        self.eos_id = int(eos)
        # generation stops at any end token the model declares (chat models often have several)
        extra = getattr(getattr(llm, "generation_config", None), "eos_token_id", None)
        extra = [] if extra is None else ([extra] if isinstance(extra, int) else list(extra))
        self.stop_ids = {self.eos_id, *map(int, extra)}
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The projections' weights (what a stage-2 checkpoint holds; the LLM is never saved)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("llm.")}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        missing = self.load_state_dict(state, strict=False)
        bad = [k for k in missing.missing_keys if not k.startswith("llm.")] + list(missing.unexpected_keys)
        if bad:
            raise KeyError(f"stage-2 checkpoint does not fit: {bad[:5]}")

    def train(self, mode: bool = True) -> "SoftPromptLM":
        super().train(mode)
        self.llm.eval()  # no dropout in the frozen LM
        return self

    # -- prompt -> ids -------------------------------------------------------------------------------------------
    def _wrap(self, text: str) -> str:
        if not self.chat:
            return text
        return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def pieces(self, ex: PromptExample) -> list[list[int] | Slot]:
        """Token-id pieces and slots in order (the prompt's layout)."""
        parts = self._wrap(ex.text).split(MARKER)
        if len(parts) - 1 != len(ex.slots):
            raise ValueError(f"prompt has {len(parts) - 1} markers but {len(ex.slots)} slots")
        out: list[list[int] | Slot] = []
        for i, p in enumerate(parts):
            out.append(self._ids(p))
            if i < len(ex.slots):
                out.append(ex.slots[i])
        return out

    def assemble(self, examples: list[PromptExample], user_vecs: torch.Tensor | None,
                 item_latents: torch.Tensor | None, *, with_target: bool = True) -> Assembled:
        """Embeddings of a batch. ``user_vecs (B, D)``: row ``Slot.index`` for user slots; ``item_latents
        (n_items + 1, latent)``: row ``Slot.index`` for item slots."""
        emb = self.llm.get_input_embeddings()
        device = emb.weight.device
        dtype = emb.weight.dtype
        user_tok = self.user_proj(user_vecs.to(device)).to(dtype) if user_vecs is not None else None  # (B, H)
        rows, labels, positions = [], [], []
        for ex in examples:
            seq_parts, lab_parts, pos, t = [], [], [], 0
            for piece in self.pieces(ex):
                if isinstance(piece, Slot):
                    if piece.kind == "user":
                        vec = user_tok[piece.index][None]
                    else:
                        vec = self.item_proj(item_latents[piece.index][None].to(device)).to(dtype)
                    seq_parts.append(vec)
                    lab_parts.append(torch.full((1,), -100, dtype=torch.long))
                    pos.append(t)
                    t += 1
                elif piece:
                    ids = torch.tensor(piece, dtype=torch.long, device=device)
                    seq_parts.append(emb(ids))
                    lab_parts.append(torch.full((len(piece),), -100, dtype=torch.long))
                    t += len(piece)
            if with_target and ex.target is not None:
                tgt = self._ids(" " + ex.target) + [self.eos_id]
                seq_parts.append(emb(torch.tensor(tgt, dtype=torch.long, device=device)))
                lab_parts.append(torch.tensor(tgt, dtype=torch.long))
            rows.append(torch.cat(seq_parts))
            labels.append(torch.cat(lab_parts))
            positions.append(pos)
        width = max(r.shape[0] for r in rows)
        B = len(rows)
        inputs = torch.zeros(B, width, self.hidden, dtype=dtype, device=device)
        mask = torch.zeros(B, width, dtype=torch.long, device=device)
        lab = torch.full((B, width), -100, dtype=torch.long, device=device)
        pad = emb(torch.tensor([self.pad_id], device=device))[0]
        for b, (r, l) in enumerate(zip(rows, labels)):
            off = width - r.shape[0]  # left padding: every prompt ends where generation starts
            inputs[b, :off] = pad
            inputs[b, off:] = r
            mask[b, off:] = 1
            lab[b, off:] = l.to(device)
            positions[b] = [p + off for p in positions[b]]
        position_ids = (mask.cumsum(1) - 1).clamp(min=0)
        has_labels = with_target and any(ex.target is not None for ex in examples)
        return Assembled(inputs, mask, position_ids, lab if has_labels else None, positions)

    def loss(self, examples: list[PromptExample], user_vecs: torch.Tensor | None,
             item_latents: torch.Tensor | None) -> torch.Tensor:
        a = self.assemble(examples, user_vecs, item_latents)
        out = self.llm(inputs_embeds=a.inputs_embeds, attention_mask=a.attention_mask, position_ids=a.position_ids,
                       labels=a.labels, use_cache=False)
        return out.loss

    @torch.no_grad()
    def generate(self, examples: list[PromptExample], user_vecs: torch.Tensor | None,
                 item_latents: torch.Tensor | None, max_new_tokens: int = 32) -> list[str]:
        """Greedy answers of a batch (the KV cache carries the soft prompt)."""
        a = self.assemble(examples, user_vecs, item_latents, with_target=False)
        emb = self.llm.get_input_embeddings()
        mask, pos = a.attention_mask, a.position_ids
        # transformers >= 5.2x names the KV cache ``cache``; older releases ``past_key_values``
        cache_kw = "cache" if "cache" in inspect.signature(self.llm.forward).parameters else "past_key_values"
        out = self.llm(inputs_embeds=a.inputs_embeds, attention_mask=mask, position_ids=pos, use_cache=True)
        past = getattr(out, cache_kw)
        B = mask.shape[0]
        done = torch.zeros(B, dtype=torch.bool, device=mask.device)
        tokens: list[list[int]] = [[] for _ in range(B)]
        nxt = out.logits[:, -1].argmax(-1)  # (B,)
        for step in range(max_new_tokens):
            for b in range(B):
                if not done[b]:
                    if int(nxt[b]) in self.stop_ids:
                        done[b] = True
                    else:
                        tokens[b].append(int(nxt[b]))
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=mask.device)], 1)
            pos = pos[:, -1:] + 1
            out = self.llm(inputs_embeds=emb(nxt[:, None]), attention_mask=mask, position_ids=pos,
                           use_cache=True, **{cache_kw: past})
            past = getattr(out, cache_kw)
            nxt = out.logits[:, -1].argmax(-1)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
