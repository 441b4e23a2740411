"""Transfer into the default layer of BPR-MF, NeuMF and SimpleX: gradients reach only upstream parameters, and
the runner trains each end to end with its table entry."""

import pytest
import torch

import llmkt
from llmkt.models.bprmf import BPRMF
from llmkt.models.neumf import NeuMF
from llmkt.models.simplex import SimpleX
from llmkt.transfer.callback import KnowledgeTransfer, TransferSettings
from llmkt.transfer import default_layer

from .test_knowledge_transfer import _cfg, _hooks, small  # noqa: F401 - fixture

N_ITEMS, N_USERS = 20, 5
BATCH = {"uid": torch.tensor([1, 2, 3]), "pos": torch.tensor([4, 5, 6]),
         "neg": torch.tensor([[1, 2], [7, 8], [9, 10]]), "hist": torch.tensor([[0, 1, 2], [3, 4, 5], [0, 0, 6]])}


@pytest.mark.parametrize("model, upstream", [
    (lambda: BPRMF(N_ITEMS, N_USERS, dim=8, n_negatives=2), ("user_emb",)),
    (lambda: NeuMF(N_ITEMS, N_USERS, gmf_dim=4, mlp_dims=[8, 8], n_negatives=2), ("user_mlp", "item_mlp", "mlp.")),
    (lambda: SimpleX(N_ITEMS, N_USERS, dim=8, hist_len=3, n_negatives=2, dropout=0.0),
     ("user_emb", "item_emb", "aggregate")),
])
def test_default_layer_gradient_reaches_only_upstream(model, upstream):
    torch.manual_seed(0)
    m = model()
    layer = default_layer(m)
    kt = KnowledgeTransfer(m, torch.randn(N_USERS + 1, 8), torch.ones(N_USERS + 1, dtype=torch.bool),
                           TransferSettings(layer=layer, alpha=1.0), sequence_mask=getattr(m, "sequence_mask", None))
    kt.build(width=8)
    kt.on_epoch_start(None, 1)
    kt.on_loss(None, BATCH, m.loss(BATCH).detach()).backward()
    for name, p in m.named_parameters():
        assert (p.grad is not None and p.grad.abs().sum() > 0) == name.startswith(upstream), name
    kt.detach()
    assert _hooks(m) == 0


@pytest.mark.parametrize("name, params, layer", [("bprmf", {"dim": 8}, "user_emb"),
                                                 ("neumf", {"gmf_dim": 4, "mlp_dims": [8, 8]}, "mlp.0"),
                                                 ("simplex", {"dim": 8, "hist_len": 5, "n_negatives": 5}, "fuse")])
def test_runner_trains_each_with_its_default_layer(tmp_path, small, name, params, layer):  # noqa: F811
    ds, vec = small
    cfg = _cfg(tmp_path, vec, reducer={"method": "pca"})
    cfg["model"] = {"name": name, **params}
    res = llmkt.train(cfg, data=ds)
    assert res.transfer["layer"] == layer and res.transfer["vector_dim"] == 8
    assert [h["kt/active"] for h in res.history] == [1.0, 1.0, 0.0, 0.0] and _hooks(res.model) == 0
    assert 0 <= res.test.metrics["NDCG@10"] <= 1


def test_ctr_default_layer_gradient_reaches_only_upstream():
    from llmkt.models.dcn import DCN
    from llmkt.models.deepfm import DeepFM

    batch = {"uid": torch.tensor([1, 2, 2]), "iid": torch.tensor([3, 4, 5]), "label": torch.tensor([1.0, 0.0, 1.0])}
    for m in (DeepFM(N_ITEMS, N_USERS, embed_dim=4, hidden=[8, 8]), DCN(N_ITEMS, N_USERS, embed_dim=4, hidden=[8, 8])):
        layer = default_layer(m)
        assert layer == "dnn.1"
        kt = KnowledgeTransfer(m, torch.randn(N_USERS + 1, 8), torch.ones(N_USERS + 1, dtype=torch.bool),
                               TransferSettings(layer=layer, alpha=1.0))
        kt.build(width=8)
        kt.on_epoch_start(None, 1)
        kt.on_loss(None, batch, m.loss(batch).detach()).backward()
        for name, p in m.named_parameters():
            upstream = name.startswith(("fields.tables", "dnn."))
            assert (p.grad is not None and p.grad.abs().sum() > 0) == upstream, (type(m).__name__, name)
        kt.detach()


def test_runner_trains_a_ctr_model_with_transfer(tmp_path, small):  # noqa: F811
    ds, vec = small
    cfg = _cfg(tmp_path, vec, reducer={"method": "pca"})
    cfg["model"] = {"name": "deepfm", "embed_dim": 4, "hidden": [8]}
    cfg["split"] = {"kind": "ratio"}
    cfg["data"] = {"positive_rating": 3}
    res = llmkt.train(cfg, data=ds)
    assert res.transfer["layer"] == "dnn.0" and set(res.test.metrics) == {"AUC", "LogLoss"}
    assert {"valid/AUC", "valid/LogLoss"} <= set(res.history[0])  # monitored by AUC, not NDCG
