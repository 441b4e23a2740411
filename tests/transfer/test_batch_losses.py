"""InfoNCE and relational transfer losses: exact on tiny batches, one row per id, rows without a vector left out,
and a run through the runner."""

import math

import pytest
import torch

import llmkt
from llmkt.errors import ConfigError
from llmkt.transfer.alignment import batch_loss, per_user_loss

from .test_knowledge_transfer import _cfg, small  # noqa: F401 - fixture

E2 = torch.eye(2)


def test_infonce_by_hand():
    ids, mask = torch.tensor([1, 2]), torch.tensor([True, True])
    # logits = I / tau: each row's own target at 1 / tau, the other at 0; both directions alike
    assert batch_loss(E2, E2, mask, ids, "infonce", 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert batch_loss(3 * E2, E2, mask, ids, "infonce", 0.5).item() == pytest.approx(math.log(1 + math.exp(-2)))
    # a repeated id (a user on several rows of a pair batch) counts once; a row without a vector not at all
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    got = batch_loss(z, t, torch.tensor([True, True, True, False]), torch.tensor([4, 4, 9, 3]), "infonce", 1.0)
    assert got.item() == pytest.approx(math.log(1 + math.exp(-1)))
    # one distinct row: nothing to contrast
    assert batch_loss(z[:2], t[:2], torch.tensor([True, True]), torch.tensor([4, 4]), "infonce").item() == 0.0


def test_max_rows_keeps_a_seeded_sample_of_distinct_rows():
    z = torch.randn(6, 3, requires_grad=True)
    t = torch.randn(6, 3)
    mask, ids = torch.ones(6, dtype=torch.bool), torch.arange(6)
    torch.manual_seed(7)
    capped = batch_loss(z, t, mask, ids, "infonce", 0.5, max_rows=3)
    capped.backward()
    assert int((z.grad.abs().sum(1) > 0).sum()) == 3  # only the sampled rows take part
    torch.manual_seed(7)
    perm = torch.randperm(6)[:3].sort().values  # the same draw: the loss of exactly those rows
    assert capped.item() == pytest.approx(batch_loss(z[perm], t[perm], mask[:3], ids[:3], "infonce", 0.5).item())
    # a cap at or above the distinct rows changes nothing
    assert batch_loss(z, t, mask, ids, "relational", max_rows=6).item() == batch_loss(z, t, mask, ids, "relational").item()


def test_relational_matches_similarity_structure_not_coordinates():
    ids, mask = torch.tensor([1, 2, 3]), torch.ones(3, dtype=torch.bool)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    assert batch_loss(2.5 * t @ rot, t, mask, ids, "relational").item() == pytest.approx(0.0, abs=1e-7)
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # cos(z1, z2) = 1 against cos(t1, t2) = 0 on both off-diagonal entries
    assert batch_loss(z, E2, mask[:2], ids[:2], "relational").item() == pytest.approx(1.0)
    # coordinates differ completely (rotated), per-row rmse is large, relational is zero
    assert per_user_loss(t @ rot, t, "rmse").mean() > 0.4


def test_rows_without_a_vector_get_no_gradient():
    z = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3)
    for kind in ("infonce", "relational", "rmse"):
        z.grad = None
        batch_loss(z, t, torch.tensor([True, False, True, True]), torch.arange(4), kind).backward()
        assert z.grad[1].abs().sum() == 0 and z.grad[[0, 2, 3]].abs().sum() > 0, kind


@pytest.mark.parametrize("loss", ["infonce", "relational"])
def test_the_runner_trains_with_batch_losses(tmp_path, small, loss):  # noqa: F811
    ds, vec = small
    cfg = _cfg(tmp_path, vec, loss=loss, alignment="projection", reducer={"method": "pca", "dim": 8})
    res = llmkt.train(cfg, data=ds)
    assert all(h["kt/L_kt"] > 0 for h in res.history[:2]) and 0 <= res.test.metrics["NDCG@10"] <= 1


def test_an_unknown_loss_is_named():
    with pytest.raises(ConfigError, match="infonce or relational"):
        per_user_loss(E2, E2, "hinge")


def test_a_transfer_term_under_one_percent_of_the_loss_warns(tmp_path, small):  # noqa: F811
    import warnings

    from llmkt.errors import LLMKTWarning

    ds, vec = small
    cfg = _cfg(tmp_path, vec, alpha=0.1, normalize_model_loss=False)  # static beta, as before the default changed
    cfg["model"] = {"name": "multvae", "hidden": 16, "latent": 8}  # a multinomial loss summed over items
    with pytest.warns(LLMKTWarning, match=r"alpha \* beta \* L_kt is 0\.\d\d% of the training loss"):
        res = llmkt.train(cfg, data=ds)
    assert res.history[0]["kt/share"] < 0.01
    cfg["transfer"]["normalize_model_loss"] = None  # the default for MultVAE: its loss normalised, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", LLMKTWarning)
        res = llmkt.train(cfg, data=ds)
    assert res.transfer["normalize_model_loss"] is True and res.history[0]["kt/share"] > 0.01
    cfg["transfer"]["dynamic_beta"] = True  # beta = L_model / L_kt: the two terms balance
    with warnings.catch_warnings():
        warnings.simplefilter("error", LLMKTWarning)
        res = llmkt.train(cfg, data=ds)
    assert res.history[0]["kt/share"] == pytest.approx(0.1, abs=1e-3)


def test_the_small_share_warning_does_not_suggest_what_is_already_on(tmp_path, small, monkeypatch):  # noqa: F811
    from llmkt.errors import LLMKTWarning
    from llmkt.transfer import callback

    ds, vec = small
    monkeypatch.setattr(callback, "SMALL_SHARE", 0.99)  # every share under it: the warning's text is what is tested
    cfg = _cfg(tmp_path, vec, alpha=0.1)
    cfg["model"] = {"name": "multvae", "hidden": 16, "latent": 8}  # normalised model loss by default
    with pytest.warns(LLMKTWarning, match="hardly moves") as rec:
        llmkt.train(cfg, data=ds)
    text = next(str(w.message) for w in rec if "hardly moves" in str(w.message))
    assert "normalised to 1" in text and "normalize_model_loss" not in text and "dynamic_beta: true" in text
    cfg["transfer"]["dynamic_beta"] = True
    with pytest.warns(LLMKTWarning, match="hardly moves") as rec:
        llmkt.train(cfg, data=ds)
    text = next(str(w.message) for w in rec if "hardly moves" in str(w.message))
    assert text.endswith("the transfer term hardly moves the model; raise alpha.")


def test_a_transfer_term_far_heavier_than_alpha_says_warns(tmp_path, small):  # noqa: F811
    import warnings

    from llmkt.errors import LLMKTWarning

    ds, vec = small
    # static beta: in-batch InfoNCE (about log of the batch's rows) against BPR's loss (about log 2 at the start)
    cfg = _cfg(tmp_path, vec, loss="infonce", alignment="projection", alpha=0.1, reducer={"method": "pca", "dim": 8})
    cfg["model"] = {"name": "bprmf", "dim": 8}
    cfg["training"]["batch_size"] = 64
    with pytest.warns(LLMKTWarning, match=r"beta \* L_kt is \d+\.\dx the model loss.*alpha 0\.1 gives the transfer term"):
        res = llmkt.train(cfg, data=ds)
    h = res.history[0]
    ratio = h["kt/beta"] * h["kt/L_kt"] / h["kt/L_model"]
    assert ratio > 3 and h["kt/share"] > 0.25  # what the warning says, from the logged terms
    cfg["transfer"]["dynamic_beta"] = True  # the share is then alpha: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", LLMKTWarning)
        res = llmkt.train(cfg, data=ds)
    assert res.history[0]["kt/share"] == pytest.approx(0.1, abs=1e-3)
