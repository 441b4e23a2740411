"""Training loops of both stages and the evaluation loop, on objects (the config lives in
``llmkt.experiments.allmrec``). Each loop checkpoints to a folder after every epoch (stage 1) or every
``save_every`` steps (stage 2), atomically, and resumes from there; checkpoints hold tensors and plain values only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from llmkt.baselines.allmrec.alignment import ItemTextAlignment, TextFn, stage1_step
from llmkt.baselines.allmrec.answers import display_title, normalise_title
from llmkt.baselines.allmrec.candidates import CandidateSets, sample_candidates
from llmkt.baselines.allmrec.prompt import Template, render
from llmkt.baselines.allmrec.soft_prompt import PromptExample, SoftPromptLM
from llmkt.data.sequences import padded_sequences, seen_items
from llmkt.errors import DataError
from llmkt.models.base import Recommender
from llmkt.training.checkpoint import load_checkpoint, save_checkpoint
from llmkt.training.seeding import seed_everything


def _bar(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


# -- stage 1 -------------------------------------------------------------------------------------------------------
@dataclass
class Stage1Data:
    """Per user with at least two training items: ``seq (U, L)`` the items before the last one (left-padded),
    ``pos (U,)`` the last training item, ``seen`` every training item (negatives avoid them)."""

    uid: np.ndarray
    seq: np.ndarray
    pos: np.ndarray
    seen: list[np.ndarray]
    n_items: int

    def subset(self, rows: np.ndarray) -> "Stage1Data":
        return Stage1Data(self.uid[rows], self.seq[rows], self.pos[rows], self.seen, self.n_items)

    def negatives(self, rng: np.random.Generator) -> np.ndarray:
        """One uniform unseen item per user (redrawn while it is in the user's training items)."""
        neg = rng.integers(1, self.n_items + 1, len(self.uid))
        for r, u in enumerate(self.uid):
            s = self.seen[u]
            if len(np.unique(s)) >= self.n_items:
                raise DataError(f"allmrec stage 1: user uid={u} has seen every item; no negative can be drawn.")
            while np.isin(neg[r], s):
                neg[r] = rng.integers(1, self.n_items + 1)
        return neg


def stage1_data(train: pd.DataFrame, n_users: int, n_items: int, max_len: int,
                users: np.ndarray | None = None) -> Stage1Data:
    full = padded_sequences(train, n_users, max_len + 1)  # (n_users + 1, L + 1)
    uid = np.flatnonzero((full > 0).sum(1) >= 2)
    if users is not None:
        uid = np.intersect1d(uid, users)
    return Stage1Data(uid, full[uid, :-1], full[uid, -1], seen_items(train, n_users), n_items)


def fit_stage1(align: ItemTextAlignment, cf_model: Recommender, text_fn: TextFn, data: Stage1Data, *,
               epochs: int, batch_size: int = 128, lr: float = 1e-4, alpha: float = 0.5, beta: float = 0.2,
               seed: int = 0, folder: Path | None = None, progress: bool = True,
               log: Callable[[dict], None] | None = None) -> list[dict]:
    """Train stage 1; ``folder/stage1_last.pt`` is the checkpoint (resumed from when present)."""
    seed_everything(seed)
    device = model_device(cf_model)
    params = [p for p in align.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    start, history = 0, []
    ckpt = folder / "stage1_last.pt" if folder else None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, "allmrec stage 1")
        align.load_state_dict(state["align"])
        opt.load_state_dict(state["optimizer"])
        start, history = int(state["epoch"]), list(state["history"])
    for epoch in range(start, epochs):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(data.uid))
        neg = data.negatives(rng)
        t0, sums, n = time.perf_counter(), {}, 0
        bar = _bar(len(order), f"stage 1 epoch {epoch + 1}/{epochs}", progress)
        for s in range(0, len(order), batch_size):
            rows = order[s:s + batch_size]
            batch = {k: torch.as_tensor(v, device=device) for k, v in
                     (("uid", data.uid[rows]), ("seq", data.seq[rows]), ("pos", data.pos[rows]), ("neg", neg[rows]))}
            terms = stage1_step(align, cf_model, text_fn, batch, opt, alpha, beta)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(rows)
            n += len(rows)
            bar.update(len(rows))
        bar.close()
        rec = {"epoch": epoch + 1, "seconds": time.perf_counter() - t0, **{k: v / max(1, n) for k, v in sums.items()}}
        history.append(rec)
        if log:
            log(rec)
        if ckpt is not None:
            save_checkpoint({"align": align.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                             "history": history}, ckpt)
    return history


# -- prompts ---------------------------------------------------------------------------------------------------------
@dataclass
class PromptSource:
    """What prompts are made of: titles by internal item id (``titles[0] = ""``), the template, how many history
    items, whether CF soft tokens are used (False: the LLM-only ablation), the longest title in words."""

    titles: np.ndarray
    template: Template
    n_history: int = 10
    use_cf: bool = True
    max_title_words: int | None = 12

    def example(self, history: np.ndarray, cands: np.ndarray, row: int, target: int | None) -> PromptExample:
        hist = [int(i) for i in history if i > 0][-self.n_history:]
        show = [display_title(self.titles[i], self.max_title_words) for i in hist]
        cshow = [display_title(self.titles[i], self.max_title_words) for i in cands]
        text, slots = render(self.template, show, hist, cshow, [int(i) for i in cands], row, use_cf=self.use_cf)
        tgt = display_title(self.titles[target], self.max_title_words) if target is not None else None
        return PromptExample(text, slots, tgt)

    def normalised_titles(self) -> np.ndarray:
        """``(n_items + 1,)`` normalised titles as the prompt shows them (cut to ``max_title_words``): what answers
        are matched against, so what candidates must keep distinct."""
        return np.asarray([normalise_title(display_title(t, self.max_title_words)) if i else ""
                           for i, t in enumerate(self.titles)], dtype=object)

    def candidate_titles(self, cands: np.ndarray) -> list[str]:
        return [display_title(self.titles[i], self.max_title_words) for i in cands]


def model_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU for a module without parameters)."""
    return next((p.device for p in module.parameters()), torch.device("cpu"))


def _user_vecs(cf_model: Recommender, seq: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return cf_model.user_representation({"seq": torch.as_tensor(seq, device=model_device(cf_model))})  # (B, D)


# -- stage 2 ---------------------------------------------------------------------------------------------------------
def fit_stage2(slm: SoftPromptLM, cf_model: Recommender, item_latents: torch.Tensor, data: Stage1Data,
               source: PromptSource, *, epochs: int = 1, batch_size: int = 4, lr: float = 1e-4,
               n_candidates: int = 20, seed: int = 0, folder: Path | None = None, save_every: int = 50,
               progress: bool = True, log: Callable[[dict], None] | None = None) -> list[dict]:
    """Train the projections on next-item answers: for each user, the history before the last training item, that
    item as target among ``n_candidates - 1`` negatives drawn outside the user's training items (redrawn each
    epoch). ``folder/stage2_last.pt`` is the checkpoint (projections, optimizer, position), resumed from."""
    seed_everything(seed)
    params = [p for p in slm.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    ckpt = folder / "stage2_last.pt" if folder else None
    epoch0, step0, history, sums = 0, 0, [], (0.0, 0, 0.0)
    setting = {"users": int(len(data.uid)), "batch_size": batch_size, "n_candidates": n_candidates, "seed": seed}
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, "allmrec stage 2")
        if dict(state.get("setting", {})) != setting:
            raise DataError(f"allmrec stage 2: {ckpt} was written with {dict(state.get('setting', {}))}, now "
                            f"{setting}; "
                            "resume with the same settings or use another job folder.")
        slm.load_trainable_state(state["projections"])
        opt.load_state_dict(state["optimizer"])
        epoch0, step0, history = int(state["epoch"]), int(state["step"]), list(state["history"])
        sums = tuple(state["sums"])
    titles_norm = source.normalised_titles()
    for epoch in range(epoch0, epochs):
        rng = np.random.default_rng([seed, 1000 + epoch])
        order = rng.permutation(len(data.uid))
        cands = sample_candidates(data.seen, (data.uid, data.pos), data.n_items, n_candidates=n_candidates,
                                  seed=seed, stream=1 + epoch, titles=titles_norm)
        steps = list(range(0, len(order), batch_size))
        bar = _bar(len(steps), f"stage 2 epoch {epoch + 1}/{epochs}", progress)
        bar.update(step0)
        loss_sum, n, before = sums if step0 else (0.0, 0, 0.0)
        t0 = time.perf_counter()
        for k, s in enumerate(steps):
            if k < step0:
                continue
            rows = order[s:s + batch_size]
            exs = [source.example(data.seq[r], cands.items[r], j, int(data.pos[r])) for j, r in enumerate(rows)]
            slm.train()
            opt.zero_grad(set_to_none=True)
            loss = slm.loss(exs, _user_vecs(cf_model, data.seq[rows]), item_latents)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(rows)
            n += len(rows)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / n:.3f}")
            if ckpt is not None and (k + 1) % save_every == 0 and k + 1 < len(steps):
                save_checkpoint({"projections": slm.trainable_state(), "optimizer": opt.state_dict(),
                                 "epoch": epoch, "step": k + 1, "history": history, "setting": setting,
                                 "sums": (loss_sum, n, before + time.perf_counter() - t0)}, ckpt)
        bar.close()
        step0 = 0
        rec = {"epoch": epoch + 1, "seconds": before + time.perf_counter() - t0, "loss": loss_sum / max(1, n),
               "examples": n}
        history.append(rec)
        if log:
            log(rec)
        if ckpt is not None:
            save_checkpoint({"projections": slm.trainable_state(), "optimizer": opt.state_dict(),
                             "epoch": epoch + 1, "step": 0, "history": history, "setting": setting,
                             "sums": (0.0, 0, 0.0)}, ckpt)
    return history


# -- evaluation ------------------------------------------------------------------------------------------------------
def eval_histories(history: pd.DataFrame, n_users: int, max_len: int) -> np.ndarray:
    """``(n_users + 1, max_len)`` the last items each user has before the evaluated one."""
    return padded_sequences(history, n_users, max_len)


def generate_answers(slm: SoftPromptLM, cf_model: Recommender | None, item_latents: torch.Tensor | None,
                     seqs: np.ndarray, cands: CandidateSets, source: PromptSource, *, batch_size: int = 8,
                     max_new_tokens: int = 32, progress: bool = True,
                     done: dict[int, str] | None = None, on_batch: Callable[[dict[int, str]], None] | None = None
                     ) -> tuple[list[str], float]:
    """Greedy answers for every candidate set (``seqs[uid]`` its history); returns ``(answers, seconds)``.
    ``done``: answers already written (uid -> text, resumed); ``on_batch`` receives each batch's new answers."""
    done = dict(done or {})
    todo = [r for r in range(len(cands)) if int(cands.uid[r]) not in done]
    t0 = time.perf_counter()
    bar = _bar(len(cands), "generate", progress)
    bar.update(len(cands) - len(todo))
    slm.eval()
    for s in range(0, len(todo), batch_size):
        rows = todo[s:s + batch_size]
        seq = seqs[cands.uid[rows]]
        exs = [source.example(seq[j], cands.items[r], j, None) for j, r in enumerate(rows)]
        uv = _user_vecs(cf_model, seq) if (cf_model is not None and source.use_cf) else None
        out = slm.generate(exs, uv, item_latents if source.use_cf else None, max_new_tokens=max_new_tokens)
        new = {int(cands.uid[r]): a for r, a in zip(rows, out)}
        done.update(new)
        if on_batch:
            on_batch(new)
        bar.update(len(rows))
    bar.close()
    return [done[int(u)] for u in cands.uid], time.perf_counter() - t0
