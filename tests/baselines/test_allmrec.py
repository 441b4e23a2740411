"""A-LLMRec: candidates, answer parsing, Hit@1, frozen parts, soft-token positions, gradients, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llmkt.baselines.allmrec import (CandidateSets, FrozenText, ItemTextAlignment, PromptExample, PromptSource,
                                     Slot, SoftPromptLM, default_template, fit_stage1, fit_stage2, hit_at_1,
                                     hit_at_1_of_scores, normalise_title, parse_answer, render, sample_candidates,
                                     stage1_data, state_hash)
from llmkt.baselines.allmrec.prompt import MARKER
from llmkt.data.dataset import IdMap
from llmkt.models.sasrec import SASRec

N_ITEMS = 40


def _history(n_users: int = 6, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.array([], np.int64)] + [rng.choice(np.arange(1, N_ITEMS + 1), size=15, replace=False)
                                       for _ in range(n_users)]


def test_candidates_exclude_history_and_positive_and_are_reproducible():
    hist = _history()
    uid = np.arange(1, 7)
    pos = np.array([int(np.setdiff1d(np.arange(1, N_ITEMS + 1), h)[0]) for h in hist[1:]])
    a = sample_candidates(hist, (uid, pos), N_ITEMS, n_candidates=20, seed=3)
    b = sample_candidates(hist, (uid, pos), N_ITEMS, n_candidates=20, seed=3)
    c = sample_candidates(hist, (uid, pos), N_ITEMS, n_candidates=20, seed=4)
    assert a.items.shape == (6, 20)
    np.testing.assert_array_equal(a.items, b.items)
    assert not np.array_equal(a.items, c.items)
    for r, u in enumerate(uid):
        row = a.items[r]
        assert (row == pos[r]).sum() == 1  # the positive once
        negs = row[row != pos[r]]
        assert len(set(negs.tolist())) == 19  # distinct
        assert not set(negs.tolist()) & set(hist[u].tolist())  # never a history item
        assert (negs > 0).all() and (negs <= N_ITEMS).all()
    # a user's set does not depend on which other users are drawn
    alone = sample_candidates(hist, (uid[3:4], pos[3:4]), N_ITEMS, n_candidates=20, seed=3)
    np.testing.assert_array_equal(alone.items[0], a.items[3])
    # training draws (stream 1 + epoch) never repeat the stored evaluation sets (stream 0) of the same seed
    train = sample_candidates(hist, (uid, pos), N_ITEMS, n_candidates=20, seed=3, stream=1)
    overlap = [len(set(x.tolist()) & set(y.tolist())) - 1 for x, y in zip(a.items, train.items)]
    assert max(overlap) < 19
    # the positive's column varies (the sets are shuffled)
    assert len({int(np.flatnonzero(r == p)[0]) for r, p in zip(a.items, pos)}) > 1


def test_candidates_avoid_duplicate_titles_and_refuse_too_few_items():
    hist = [np.array([], np.int64), np.array([1, 2], np.int64)]
    titles = np.array([""] + [normalise_title(f"Soap {i % 5}") for i in range(1, N_ITEMS + 1)], dtype=object)
    # 5 distinct titles only: the positive's title + 4 others -> at most 5 candidates
    c = sample_candidates(hist, (np.array([1]), np.array([3])), N_ITEMS, n_candidates=5, seed=0, titles=titles)
    assert len({titles[i] for i in c.items[0]}) == 5
    with pytest.raises(Exception, match="could not draw"):
        sample_candidates(hist, (np.array([1]), np.array([3])), N_ITEMS, n_candidates=6, seed=0, titles=titles,
                          max_tries=5)
    with pytest.raises(Exception, match="fewer than"):
        sample_candidates([np.array([]), np.arange(1, 30)], (np.array([1]), np.array([35])), N_ITEMS,
                          n_candidates=20)


def test_candidates_round_trip_with_external_ids(tmp_path):
    hist = _history(3)
    pos = np.array([int(np.setdiff1d(np.arange(1, N_ITEMS + 1), h)[0]) for h in hist[1:]])
    c = sample_candidates(hist, (np.arange(1, 4), pos), N_ITEMS, n_candidates=10, seed=7)
    users, items = IdMap([f"u{i}" for i in range(1, 4)]), IdMap([f"i{i}" for i in range(1, N_ITEMS + 1)])
    path = c.save(tmp_path / "cands.csv", users, items)
    first = pd.read_csv(path).iloc[0]
    assert first["user_id"] == "u1" and first["positive"] == f"i{pos[0]}"
    back = CandidateSets.load(path, users, items)
    np.testing.assert_array_equal(back.items, c.items)
    np.testing.assert_array_equal(back.positive, c.positive)
    assert back.seed == 7
    path.write_text("user_id,positive,candidates\nu1,i999,i1 i2\n")
    with pytest.raises(Exception, match=r"line 2: id 'i999' is not in the dataset"):
        CandidateSets.load(path, users, items)


def test_parse_answer_rules():
    titles = ["Red Soap", "Blue Cream &amp; Gel", "Green Mask"]
    assert parse_answer("Red soap", titles) == 0
    assert parse_answer('1. "Blue Cream & Gel" is my pick', titles) == 1  # label dropped, quoted title wins
    assert parse_answer("Answer: green   MASK.\nmore text", titles) == 2  # first line, punctuation, case
    assert parse_answer("Lip Balm", titles) is None  # names no candidate
    assert parse_answer("  \n ", titles) == -1  # unparseable
    assert parse_answer("Red Soap<|im_end|>junk", titles, ("<|im_end|>",)) == 0
    assert parse_answer("Red Soap", ["Red Soap", "red soap!"]) is None  # ambiguous: no single match


def test_hit_at_1_hand_case_with_an_unparseable_answer():
    titles = [["Red Soap", "Blue Cream"], ["Green Mask", "Oil"], ["Lip Balm", "Serum"], ["Comb", "Toner"]]
    answers = ['"Red Soap"', "Oil", "", "Brush"]
    res = hit_at_1(answers, titles, [0, 0, 1, 1])
    assert res.hit_at_1 == 0.25 and res.n == 4
    assert res.unparseable == 1 and res.no_match == 1
    np.testing.assert_array_equal(res.per_user, [1, 0, 0, 0])
    scores = np.array([[0.0, 0.1, 0.9, 0.2], [0.0, 0.5, 0.5, 0.1]])  # over all items (n_items + 1 = 4)
    cands = np.array([[2, 1, 3], [1, 2, 3]])
    got = hit_at_1_of_scores(scores, cands, np.array([2, 1]))
    np.testing.assert_array_equal(got.per_user, [1, 0])  # a tie at the top is a miss


def _sasrec(seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(N_ITEMS, max_len=8, hidden=16, n_blocks=1, n_heads=1, dropout=0.0).eval()


def _train_frame(n_users: int = 12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        for k, i in enumerate(rng.choice(np.arange(1, N_ITEMS + 1), size=6, replace=False)):
            rows.append((u, int(i), k))
    return pd.DataFrame(rows, columns=["uid", "iid", "timestamp"])


def test_stage1_trains_the_alignment_and_leaves_the_cf_model_bit_identical(tmp_path):
    cf = _sasrec()
    for p in cf.parameters():
        p.requires_grad_(False)
    before = state_hash(cf)
    text = FrozenText(np.random.default_rng(1).normal(size=(N_ITEMS + 1, 24)).astype(np.float32))
    torch.manual_seed(0)
    align = ItemTextAlignment(16, 24, latent=8)
    a0 = state_hash(align)
    data = stage1_data(_train_frame(), 12, N_ITEMS, max_len=8)
    assert len(data.uid) == 12 and (data.pos > 0).all() and not (data.seq == data.pos[:, None]).any()
    hist = fit_stage1(align, cf, text, data, epochs=3, batch_size=4, lr=1e-2, progress=False)
    assert state_hash(cf) == before
    assert state_hash(align) != a0
    assert hist[-1]["total"] < hist[0]["total"]
    assert set(hist[0]) >= {"matching", "item_recon", "text_recon", "rec", "total", "seconds"}
    z = align.item_latents(cf)
    assert z.shape == (N_ITEMS + 1, 8) and float(z[0].abs().sum()) == 0.0


def test_stage1_resumes_from_its_checkpoint_to_the_same_weights(tmp_path):
    cf = _sasrec()
    text = FrozenText(np.random.default_rng(1).normal(size=(N_ITEMS + 1, 24)).astype(np.float32))
    data = stage1_data(_train_frame(), 12, N_ITEMS, max_len=8)

    def run(folder, epochs):
        torch.manual_seed(0)
        align = ItemTextAlignment(16, 24, latent=8)
        fit_stage1(align, cf, text, data, epochs=epochs, batch_size=4, lr=1e-2, progress=False, folder=folder)
        return align

    straight = run(None, 3)
    (tmp_path / "r").mkdir()
    run(tmp_path / "r", 1)  # "crash" after one epoch
    resumed = run(tmp_path / "r", 3)
    assert state_hash(resumed) == state_hash(straight)


transformers = pytest.importorskip("transformers")
from tests.baselines.allmrec_helpers import tiny_llm, tiny_tokenizer  # noqa: E402

TITLES = np.array([""] + [f"{c} {w}" for c in ("red", "blue", "green", "lip") for w in
                          ("soap", "cream", "gel", "mask", "oil", "brush", "balm", "serum", "toner", "comb")],
                  dtype=object)


def _slm(seed: int = 0, chat: bool = True) -> SoftPromptLM:
    tok = tiny_tokenizer(chat)
    torch.manual_seed(seed)
    return SoftPromptLM(tiny_llm(len(tok), seed), tok, cf_dim=16, latent=8, chat=chat)


def test_soft_tokens_sit_where_the_template_puts_them():
    slm = _slm()
    tmpl = default_template("product")
    text, slots = render(tmpl, ["red soap", "blue gel"], [1, 13], ["green oil", "lip comb", "red mask"], [25, 40, 4],
                         0, use_cf=True)
    assert text.count(MARKER) == 6
    assert slots == [Slot("item", 1), Slot("item", 13), Slot("user", 0), Slot("item", 25), Slot("item", 40),
                     Slot("item", 4)]
    assert text.index('"red soap" ' + MARKER) < text.index("representation token: " + MARKER)
    latents = torch.randn(N_ITEMS + 1, 8)
    user = torch.randn(2, 16)
    short_text, short_slots = render(tmpl, ["red soap"], [1], ["green oil"], [25], 1, use_cf=True)
    a = slm.assemble([PromptExample(text, slots, "red mask"), PromptExample(short_text, short_slots, "green oil")],
                     user, latents)
    pos = a.slot_positions[0]
    # the shorter prompt is left-padded: its soft tokens are shifted by the padding, its user slot reads row 1
    pad = int((a.attention_mask[1] == 0).sum())
    assert pad > 0 and int(a.attention_mask[0].sum()) == a.attention_mask.shape[1]
    alone = slm.assemble([PromptExample(short_text, short_slots, "green oil")], user, latents)
    assert a.slot_positions[1] == [p + pad for p in alone.slot_positions[0]]
    torch.testing.assert_close(a.inputs_embeds[1, pad:], alone.inputs_embeds[0])
    assert torch.equal(a.labels[1, pad:], alone.labels[0]) and bool((a.labels[1, :pad] == -100).all())
    assert a.position_ids[1, pad].item() == 0 and a.position_ids[1, -1].item() == a.attention_mask[1].sum() - 1
    with torch.no_grad():
        torch.testing.assert_close(a.inputs_embeds[1, a.slot_positions[1][1]], slm.user_proj(user)[1])
    with torch.no_grad():
        want = [slm.item_proj(latents[s.index][None])[0] if s.kind == "item" else slm.user_proj(user)[0]
                for s in slots]
        for p, w in zip(pos, want):
            torch.testing.assert_close(a.inputs_embeds[0, p], w)
    # every other prompt position is the LLM's own token embedding; the token right before each soft token is the
    # closing quote of its title (items) or the colon (user)
    ids = [x for piece in slm.pieces(PromptExample(text, slots)) if not isinstance(piece, Slot) for x in piece]
    emb = slm.llm.get_input_embeddings().weight
    others = [t for t in range(a.inputs_embeds.shape[1]) if t not in pos][: len(ids)]
    torch.testing.assert_close(a.inputs_embeds[0, others], emb[ids])
    before = [slm.tokenizer.convert_ids_to_tokens(int(i)) for i in ids]
    assert before[pos[0] - 1] == '"' and before[pos[2] - 3] == ":"
    # labels: only the target and the end token
    lab = a.labels[0]
    n_tgt = len(slm.tokenizer(" red mask", add_special_tokens=False)["input_ids"]) + 1
    assert int((lab != -100).sum()) == n_tgt and int(lab[-1]) == slm.eos_id
    # LLM-only ablation: no markers, no user sentence, no slots
    t2, s2 = render(tmpl, ["red soap"], [1], ["green oil"], [25], 0, use_cf=False)
    assert MARKER not in t2 and s2 == [] and "representation" not in t2


def test_stage2_trains_only_the_projections_and_leaves_the_llm_bit_identical(tmp_path):
    slm = _slm()
    cf = _sasrec()
    llm_before, cf_before = state_hash(slm.llm), state_hash(cf)
    trainable = {n for n, p in slm.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("user_proj.", "item_proj.")) for n in trainable)
    data = stage1_data(_train_frame(), 12, N_ITEMS, max_len=8)
    source = PromptSource(TITLES, default_template("product"), n_history=4)
    latents = torch.randn(N_ITEMS + 1, 8)
    # gradients reach the projections and nothing else
    ex = [source.example(data.seq[0], np.array([1, 2, 3]), 0, int(data.pos[0]))]
    slm.loss(ex, cf.user_representation({"seq": torch.as_tensor(data.seq[:1])}), latents).backward()
    with_grad = {n for n, p in slm.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == trainable
    slm.zero_grad(set_to_none=True)
    proj_before = {k: v.clone() for k, v in slm.trainable_state().items()}
    hist = fit_stage2(slm, cf, latents, data, source, epochs=1, batch_size=4, n_candidates=5, lr=1e-2,
                      progress=False, folder=tmp_path)
    assert state_hash(slm.llm) == llm_before and state_hash(cf) == cf_before
    assert any(not torch.equal(proj_before[k], v) for k, v in slm.trainable_state().items())
    assert hist[0]["examples"] == 12 and np.isfinite(hist[0]["loss"])
    assert (tmp_path / "stage2_last.pt").exists()
    assert not any(k.startswith("llm.") for k in torch.load(tmp_path / "stage2_last.pt",
                                                            weights_only=True)["projections"])


def test_generation_does_not_depend_on_the_batch_it_is_in():
    slm = _slm(seed=1)
    source = PromptSource(TITLES, default_template("product"), n_history=4)
    latents = torch.randn(N_ITEMS + 1, 8)
    short = source.example(np.array([0, 0, 0, 1]), np.array([2, 3]), 0, None)
    long = source.example(np.array([5, 6, 7, 8]), np.arange(10, 25), 1, None)
    users = torch.randn(2, 16)
    alone = slm.generate([short], users[:1], latents, max_new_tokens=6)
    both = slm.generate([short, long], users, latents, max_new_tokens=6)
    assert alone[0] == both[0] and alone[0] != ""
    assert len(alone[0].split()) <= 6 and isinstance(both[1], str)


def test_stage2_resumes_mid_epoch_to_the_same_projections(tmp_path, monkeypatch):
    cf = _sasrec()
    data = stage1_data(_train_frame(), 12, N_ITEMS, max_len=8)
    source = PromptSource(TITLES, default_template("product"), n_history=4)
    latents = torch.randn(N_ITEMS + 1, 8)

    def run(folder, crash_after=None):
        slm = _slm(seed=2)
        if crash_after is not None:
            calls = {"n": 0}
            real = slm.loss

            def loss(*a, **k):
                calls["n"] += 1
                if calls["n"] > crash_after:
                    raise KeyboardInterrupt
                return real(*a, **k)

            monkeypatch.setattr(slm, "loss", loss)
        hist = fit_stage2(slm, cf, latents, data, source, epochs=1, batch_size=3, n_candidates=5, lr=1e-2,
                          progress=False, folder=folder, save_every=1)
        return slm, hist

    straight, h1 = run(None)
    (tmp_path / "r").mkdir()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "r", crash_after=2)  # 2 of 4 steps done, then killed
    assert torch.load(tmp_path / "r" / "stage2_last.pt", weights_only=True)["step"] == 2
    resumed, h2 = run(tmp_path / "r")
    for k, v in straight.trainable_state().items():
        torch.testing.assert_close(resumed.trainable_state()[k], v, rtol=0, atol=0)
    assert h2[0]["examples"] == 12 and h2[0]["loss"] == pytest.approx(h1[0]["loss"], rel=1e-6)
    (tmp_path / "r" / "stage2_last.pt").unlink()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "r", crash_after=1)
    with pytest.raises(Exception, match="resume with the same settings"):
        fit_stage2(_slm(seed=2), cf, latents, data, source, epochs=1, batch_size=4, n_candidates=5,
                   progress=False, folder=tmp_path / "r", save_every=1)
