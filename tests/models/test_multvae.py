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


def test_a_sparse_input_gives_the_dense_encoder_s_loss_and_gradients():
    x = torch.zeros(6, 41)
    x[torch.arange(6), torch.tensor([1, 5, 9, 9, 30, 40])] = 1  # 1 item per user: 2.4 % non-zeros, read sparse
    grads, losses = [], []
    for sparse in (True, False):
        torch.manual_seed(0)
        m = MultVAE(40, hidden=16, latent=4, sparse_input=sparse)
        seen = {}
        h = m.encoder[0].register_forward_hook(lambda mod, i, o: seen.update(layout=i[0].layout))
        torch.manual_seed(1)
        loss = m.loss({"uid": torch.arange(6), "items": x})
        h.remove()
        loss.backward()
        assert seen["layout"] == (torch.sparse_coo if sparse else torch.strided)
        losses.append(loss.item())
        grads.append(m.encoder[0].weight.grad.clone())
    assert abs(losses[0] - losses[1]) < 1e-5 and torch.allclose(grads[0], grads[1], atol=1e-6)
    assert grads[0].abs().sum() > 0
