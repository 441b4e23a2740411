import numpy as np
import torch

from llmkt.models import MultVAE
from llmkt.training.batches import user_rows


def test_user_rows_are_exact_multi_hot():
    indptr = np.array([0, 0, 2, 5])
    items = np.array([3, 1, 2, 4, 2])
    rows = user_rows(indptr, items, np.array([2, 1]), n_items=5)
    assert rows.tolist() == [[0, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 0]]


def test_multvae_shapes_loss_and_anneal():
    torch.manual_seed(0)
    m = MultVAE(12, hidden=16, latent=4, anneal_steps=10)
    x = (torch.rand(5, 13) < 0.3).float()
    x[:, 0] = 0
    x[:, 1] = 1
    b = {"uid": torch.arange(5), "items": x}
    loss = m.loss(b)
    assert loss.ndim == 0 and torch.isfinite(loss) and int(m.steps) == 1
    m.eval()
    assert m.score(b).shape == (5, 13) and torch.isinf(m.score(b)[:, 0]).all()
    assert m.user_representation(b).shape == (5, 4)


def test_multvae_loss_decreases():
    torch.manual_seed(0)
    m = MultVAE(12, hidden=16, latent=4, dropout=0.0)
    x = torch.zeros(8, 13)
    x[:, 1:4] = 1
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(50):
        loss = m.loss({"uid": torch.arange(8), "items": x})
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 1.0
