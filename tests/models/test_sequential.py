import pytest
import torch
import torch.nn.functional as F

from llmkt.models import BERT4Rec, SASRec

N_ITEMS, L = 30, 8


def _batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, N_ITEMS + 1, (b, L + 1), generator=g)
    seq[0, :5] = 0  # a short, left-padded user
    return {"uid": torch.arange(1, b + 1), "seq": seq}


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_shapes_and_finite_loss(cls):
    torch.manual_seed(0)
    m = cls(N_ITEMS, max_len=L, hidden=16, n_heads=2)
    b = _batch()
    loss = m.loss(b)
    assert loss.ndim == 0 and torch.isfinite(loss)
    m.eval()
    hist = {"uid": b["uid"], "seq": b["seq"][:, 1:]}
    assert m.score(hist).shape == (4, N_ITEMS + 1)
    assert m.user_representation(hist).shape == (4, 16)
    assert torch.isinf(m.score(hist)[:, 0]).all()  # padding column is never a candidate


def test_sasrec_ce_loss_equals_reference_cross_entropy():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, max_len=L, hidden=16).eval()
    b = _batch()
    inputs, targets = b["seq"][:, :-1], b["seq"][:, 1:]
    h = m.encode(inputs)
    keep = (targets > 0) & (inputs > 0)
    ref = F.cross_entropy(m._logits(h[keep]), targets[keep])
    assert torch.allclose(m.loss(b), ref, atol=1e-5)


def test_sasrec_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, max_len=L, hidden=16).eval()
    seq = torch.randint(1, N_ITEMS + 1, (1, L))
    changed = seq.clone()
    changed[0, -1] = (seq[0, -1] % N_ITEMS) + 1  # change only the most recent item
    h1, h2 = m.encode(seq), m.encode(changed)
    assert torch.allclose(h1[:, :-1], h2[:, :-1], atol=1e-6)  # earlier positions cannot see the future
    assert not torch.allclose(h1[:, -1], h2[:, -1])
    # a short history gives the same prediction whatever the padding length in front of it
    short = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5]])
    assert torch.allclose(m.score({"seq": short}), m.score({"seq": short[:, 3:]}), atol=1e-5)


def test_bert4rec_scores_from_mask_slot_and_is_bidirectional():
    torch.manual_seed(0)
    m = BERT4Rec(N_ITEMS, max_len=L, hidden=16).eval()
    seq = torch.randint(1, N_ITEMS + 1, (1, L))
    h = m.encode(seq)
    changed = seq.clone()
    changed[0, -1] = (seq[0, -1] % N_ITEMS) + 1
    assert not torch.allclose(h[:, 0], m.encode(changed)[:, 0])  # first position sees the last one
    x = m._with_mask_slot(seq)
    assert x[0, -1].item() == m.mask_token
    assert torch.equal(x[0, :-1], seq[0, -(L - 1):])


def test_bert4rec_masks_at_least_one_item_per_sequence():
    torch.manual_seed(0)
    m = BERT4Rec(N_ITEMS, max_len=L, hidden=16, mask_prob=0.01)
    loss = m.loss({"seq": torch.randint(1, N_ITEMS + 1, (16, L))})
    assert torch.isfinite(loss) and loss > 0


def test_sasrec_bce_option_trains():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, max_len=L, hidden=16, loss="bce", n_negatives=3)
    assert torch.isfinite(m.loss(_batch()))
    with pytest.raises(ValueError, match="model.loss"):
        SASRec(N_ITEMS, loss="hinge")


@pytest.mark.parametrize("cls", [SASRec, BERT4Rec])
def test_loss_decreases_on_a_fixed_batch(cls):
    torch.manual_seed(0)
    m = cls(N_ITEMS, max_len=L, hidden=16, dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    b = _batch(b=8)
    first = None
    for _ in range(30):
        torch.manual_seed(1)  # same BERT4Rec masks every step
        loss = m.loss(b)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
