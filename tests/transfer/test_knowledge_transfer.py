import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import llmkt
from llmkt.config import validate_config
from llmkt.data import Dataset
from llmkt.errors import ConfigError
from llmkt.models import BERT4Rec, SASRec
from llmkt.training.callbacks import Callback
from llmkt.transfer.callback import KnowledgeTransfer, TransferSettings
from llmkt.data.vectors import ProfileVectors
from tests.conftest import random_interactions

N_ITEMS, L = 20, 6


def _batch(b=4):
    g = torch.Generator().manual_seed(0)
    seq = torch.randint(1, N_ITEMS + 1, (b, L + 1), generator=g)
    seq[0, :3] = 0
    return {"uid": torch.arange(1, b + 1), "seq": seq}


def _kt(model, layer, dim=8, mask=None, **kw):
    targets = torch.randn(6, dim, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(6, dtype=torch.bool) if mask is None else mask
    kt = KnowledgeTransfer(model, targets, mask, TransferSettings(layer=layer, **kw),
                           sequence_mask=model.sequence_mask)
    kt.build(width=8)
    kt.on_epoch_start(None, 1)
    return kt


def test_transfer_gradient_reaches_only_upstream_parameters():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, max_len=L, hidden=8, n_heads=2)
    kt = _kt(m, "blocks.0", alpha=1.0)
    b = _batch()
    loss = kt.on_loss(None, b, m.loss(b).detach())  # alpha=1: only the transfer term carries gradient
    loss.backward()
    for name, p in m.named_parameters():
        upstream = name.startswith(("item_emb", "pos_emb", "blocks.0."))
        has_grad = p.grad is not None and p.grad.abs().sum() > 0
        assert has_grad == upstream, name
    kt.detach()


def test_beta_follows_definition_and_is_detached():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, max_len=L, hidden=8, n_heads=2, dropout=0.0)  # two forwards give the same graph
    kt = _kt(m, "blocks.1", alpha=0.3, dynamic_beta=True)
    b = _batch()
    l_model = m.loss(b)
    l_kt, _ = kt.transfer_loss(b)
    m.loss(b)  # run again so the hook captures for on_loss
    total = kt.on_loss(None, b, l_model)
    beta = l_model.detach() / l_kt.detach()
    assert torch.allclose(total, 0.3 * beta * l_kt + 0.7 * l_model)
    assert torch.allclose(total, l_model)  # with dynamic beta both terms are rescaled to L_model's size
    # beta is a constant: d total / d L_kt = alpha * beta (checked through a parameter's gradient)
    w = m.blocks[1].ffn.fc2.bias
    g_total = torch.autograd.grad(total, w, retain_graph=True)[0]
    g_expected = torch.autograd.grad(0.3 * beta * l_kt + 0.7 * l_model, w)[0]
    assert torch.allclose(g_total, g_expected)
    assert kt.epoch_logs(None)["kt/beta"] == pytest.approx(float(beta))
    kt.detach()


def test_normalized_model_loss_has_value_one_and_the_model_gradient_over_its_loss():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, max_len=L, hidden=8, n_heads=2, dropout=0.0)
    kt = _kt(m, "blocks.1", alpha=0.3, normalize_model_loss=True)
    b = _batch()
    l_model = m.loss(b) * 250.0  # a model loss in the hundreds (MultVAE's scale)
    l_kt, _ = kt.transfer_loss(b)
    m.loss(b)
    total = kt.on_loss(None, b, l_model)
    assert torch.allclose(total, 0.3 * l_kt + 0.7 * torch.ones(()))
    w = m.blocks[1].ffn.fc2.bias
    g_total = torch.autograd.grad(total, w, retain_graph=True)[0]
    g_expected = torch.autograd.grad(0.3 * l_kt + 0.7 * l_model / float(l_model), w)[0]
    assert torch.allclose(g_total, g_expected)
    logs = kt.epoch_logs(None)
    assert logs["kt/L_model"] == pytest.approx(float(l_model))  # the model's own loss is what the log shows
    assert logs["kt/share"] == pytest.approx(float(0.3 * l_kt / (0.3 * l_kt + 0.7)), rel=1e-5)
    kt.detach()


def test_dynamic_beta_and_normalized_model_loss_are_refused_together(tmp_path):
    vec = {"path": str(tmp_path / "v.npz")}
    with pytest.raises(ConfigError, match="choose one"):
        validate_config({"transfer": {"vectors": vec, "dynamic_beta": True, "normalize_model_loss": True}})


def test_masked_users_contribute_zero():
    torch.manual_seed(0)
    m = SASRec(N_ITEMS, max_len=L, hidden=8, n_heads=2).eval()
    m.train()
    mask = torch.tensor([False, True, False, True, True, True])  # users 2 (row 2) masked
    kt = _kt(m, "blocks.1", mask=mask)
    b = _batch()
    torch.manual_seed(5)
    m.loss(b)
    a, covered = kt.transfer_loss(b)
    kt.targets[2] += 100.0  # changing a masked user's target changes nothing
    torch.manual_seed(5)
    m.loss(b)
    a2, _ = kt.transfer_loss(b)
    assert covered == 3 and torch.allclose(a, a2)
    kt.mask[:] = False
    torch.manual_seed(5)
    m.loss(b)
    zero, covered = kt.transfer_loss(b)
    assert covered == 0 and zero.item() == 0.0
    kt.detach()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    ds = Dataset.from_frames(random_interactions(n_users=40, n_items=30, per_user=10), name="small")
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("vec") / "vectors.npz"
    # 30 of 40 users have a vector
    ProfileVectors(ds.user_map.external_ids[:30], rng.normal(size=(30, 24)), {"encoder": "random"}).save(path)
    return ds, path


def _cfg(tmp_path, vec, **transfer):
    return {"model": {"name": "sasrec", "max_len": 10, "hidden": 16, "n_heads": 2},
            "training": {"epochs": 4, "batch_size": 8, "lr": 0.01, "progress": False, "seed": 7},
            "output": {"dir": str(tmp_path)},
            "transfer": {"vectors": {"path": str(vec)}, "reducer": {"method": "pca"}, "compare_base": False,
                         "schedule": [{"step": "transfer", "epochs": 2}, {"step": "finetune", "epochs": 2}],
                         **transfer}}


def _hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_phases_switch_hooks_removed_and_logs(tmp_path, small):
    ds, vec = small
    res = llmkt.train(_cfg(tmp_path, vec, dynamic_beta=True), data=ds)
    assert [h["kt/active"] for h in res.history] == [1.0, 1.0, 0.0, 0.0]
    assert all(h["kt/coverage"] == pytest.approx(0.75, abs=0.1) for h in res.history[:2])
    assert "kt/L_kt" in res.history[0] and "kt/L_kt" not in res.history[2]
    assert _hooks(res.model) == 0
    assert res.transfer["coverage"] == pytest.approx(0.75) and res.transfer["layer"] == "blocks.1"
    rows = pd.read_csv(res.run_dir / "metrics.csv")
    assert rows["kt/active"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert (res.run_dir / "reducer.npz").exists()


def test_hooks_removed_after_an_exception(tmp_path, small):
    ds, vec = small
    seen = {}

    class Boom(Callback):
        def on_batch_end(self, trainer, loss):
            seen["model"] = trainer.model
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        llmkt.train(_cfg(tmp_path, vec), data=ds, extra_callbacks=[Boom()])
    assert _hooks(seen["model"]) == 0


def test_freeze_applies_only_in_its_phase(tmp_path, small):
    ds, vec = small

    class Snap(Callback):
        def __init__(self):
            self.emb = []

        def on_epoch_end(self, trainer, epoch, logs):
            self.emb.append(trainer.model.item_emb.weight.detach().clone())

    snap = Snap()
    cfg = _cfg(tmp_path, vec)
    cfg["transfer"]["schedule"][0]["freeze"] = ["item_emb"]
    res = llmkt.train(cfg, data=ds, extra_callbacks=[snap])
    assert torch.equal(snap.emb[0], snap.emb[1])  # frozen during the transfer phase
    assert not torch.equal(snap.emb[1], snap.emb[3])  # trained in fine-tuning
    assert all(p.requires_grad for p in res.model.parameters())


def test_trained_model_serves_like_a_fresh_base_model(tmp_path, small):
    ds, vec = small
    res = llmkt.train(_cfg(tmp_path, vec, pooling="attention", alignment="projection"), data=ds)
    fresh = SASRec(ds.n_items, max_len=10, hidden=16, n_heads=2)
    fresh.load_state_dict(torch.load(res.run_dir / "best.pt", weights_only=True))
    res.model.cpu().eval(), fresh.eval()
    batch = {"uid": torch.arange(1, 6), "seq": torch.randint(1, ds.n_items + 1, (5, 10))}
    assert torch.equal(res.model.score(batch), fresh.score(batch))
    assert set(fresh.state_dict()) == set(res.model.state_dict())  # no transfer parameters inside the model


def test_shuffled_control_run_uses_other_users_vectors(tmp_path, small):
    ds, vec = small
    cfg = _cfg(tmp_path, vec)
    cfg["transfer"]["vectors"]["control"] = "shuffle"
    res = llmkt.train(cfg, data=ds)
    assert res.transfer["vectors_meta"] == {"encoder": "random", "control": "shuffle", "control_seed": 0}
    assert res.transfer["coverage"] == pytest.approx(0.75) and "kt/L_kt" in res.history[0]
    cfg["transfer"]["vectors"]["control"] = "shuffled"
    with pytest.raises(ConfigError, match="transfer.vectors.control"):
        llmkt.train(cfg, data=ds)


def test_compare_base_reports_both(tmp_path, small):
    ds, vec = small
    cfg = _cfg(tmp_path, vec)
    cfg["transfer"]["compare_base"] = True
    res = llmkt.train(cfg, data=ds)
    s = res.summary()
    assert set(s["base"]["test"]) == set(s["test"]) and "NDCG@10" in s["paired_vs_base"]
    assert "kt/active" not in res.base.history[0]


def test_unknown_step_and_layer_fail_before_work(tmp_path, small):
    ds, vec = small
    bad = _cfg(tmp_path, vec)
    bad["transfer"]["schedule"][0]["step"] = "tranfer"
    with pytest.raises(ConfigError, match="transfer.schedule.0: Input tag 'tranfer'"):
        validate_config(bad)
    with pytest.raises(ConfigError, match=r"no layer of SASRec matches 'block.9'.*available layers"):
        llmkt.train(_cfg(tmp_path, vec, layer="block.9"), data=ds)
    with pytest.raises(ConfigError, match="last 3 epochs but training.epochs is 4"):
        cfg = _cfg(tmp_path, vec)
        cfg["transfer"]["schedule"][1]["epochs"] = 1
        llmkt.train(cfg, data=ds)


def test_bert4rec_and_a_users_own_module(small):
    ds, _ = small
    torch.manual_seed(0)
    m = BERT4Rec(N_ITEMS, max_len=L, hidden=8, n_heads=2)
    kt = _kt(m, "blocks.0", pooling="recency")
    b = _batch()
    total = kt.on_loss(None, b, m.loss(b))
    total.backward()
    assert m.pos_emb.weight.grad is not None and torch.isfinite(total)
    kt.detach()

    class TwoTower(nn.Module):  # a user's own model: no sequence, a 2-D user layer
        def __init__(self):
            super().__init__()
            self.user = nn.Embedding(10, 8)
            self.user_mlp = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
            self.item = nn.Embedding(N_ITEMS + 1, 8)

        def loss(self, batch):
            u = self.user_mlp(self.user(batch["uid"]))
            return nn.functional.cross_entropy(u @ self.item.weight.T, batch["seq"][:, -1])

    own = TwoTower()
    targets = torch.randn(10, 4)
    kt = KnowledgeTransfer(own, targets, torch.ones(10, dtype=torch.bool),
                           TransferSettings(layer="user_mlp", alignment="slice", loss="cosine", alpha=1.0))
    kt.build(width=8)
    kt.on_epoch_start(None, 1)
    total = kt.on_loss(None, b, own.loss(b).detach())
    total.backward()
    assert own.user.weight.grad.abs().sum() > 0 and own.item.weight.grad is None
    kt.on_fit_end(None)
    assert _hooks(own) == 0


def test_multvae_transfer_into_mu(tmp_path, small):
    ds, vec = small
    torch.manual_seed(0)
    from llmkt.models import MultVAE

    m = MultVAE(N_ITEMS, hidden=16, latent=8)
    kt = KnowledgeTransfer(m, torch.randn(6, 8), torch.ones(6, dtype=torch.bool),
                           TransferSettings(layer="mu", alpha=1.0))
    kt.build(width=8)
    kt.on_epoch_start(None, 1)
    x = (torch.rand(4, N_ITEMS + 1) < 0.3).float()
    b = {"uid": torch.arange(1, 5), "items": x}
    kt.on_loss(None, b, m.loss(b).detach()).backward()
    for name, p in m.named_parameters():
        upstream = name.startswith(("encoder.", "mu."))
        assert (p.grad is not None and p.grad.abs().sum() > 0) == upstream, name
    kt.detach()
    # end to end through the runner, default layer from the table
    cfg = _cfg(tmp_path, vec, reducer={"method": "pca"})
    cfg["model"] = {"name": "multvae", "hidden": 16, "latent": 8}
    res = llmkt.train(cfg, data=ds)
    assert res.transfer["layer"] == "mu" and res.transfer["vector_dim"] == 8
    assert [h["kt/active"] for h in res.history] == [1.0, 1.0, 0.0, 0.0] and _hooks(res.model) == 0


def test_reducer_is_fitted_on_training_users_only(tmp_path):
    from llmkt.data import global_temporal
    from llmkt.training.batches import SequenceBatches
    from llmkt.transfer import ReducerSpec, TransferSpec, build_transfer

    df = random_interactions(n_users=30, n_items=20, per_user=8)
    late = pd.DataFrame({"user_id": ["late"] * 3, "item_id": ["i1", "i2", "i3"], "rating": 5,
                         "timestamp": [5000, 5001, 5002]})  # only after the test boundary
    ds = Dataset.from_frames(pd.concat([df, late], ignore_index=True))
    split = global_temporal(ds, 0.8, 0.9)
    assert "late" not in set(split.train["user_id"])
    rng = np.random.default_rng(0)
    vec = tmp_path / "v.npz"
    ProfileVectors(ds.user_map.external_ids, rng.normal(size=(ds.n_users, 24)), {}).save(vec)
    model = SASRec(ds.n_items, max_len=10, hidden=16, n_heads=2)
    batches = SequenceBatches(split.train, ds.n_users, 10, 8)
    spec = TransferSpec(reducer=ReducerSpec("pca"))  # objects, no config
    setup = build_transfer(spec, model, split, ProfileVectors.load(vec), next(iter(batches.epoch(0))),
                           torch.device("cpu"), epochs=4, seed=0)
    n_train_users = split.train["uid"].nunique()
    assert setup.reducer.fitted_on == n_train_users < ds.n_users
    assert setup.info["reducer_fitted_on"] == n_train_users


def test_alpha_zero_transfer_equals_the_base_run(tmp_path, small):
    ds, vec = small
    cfg = _cfg(tmp_path, vec, alpha=0.0, alignment="projection", pooling="attention")
    cfg["transfer"]["compare_base"] = True
    res = llmkt.train(cfg, data=ds)
    assert [h["train/loss"] for h in res.history] == [h["train/loss"] for h in res.base.history]
    assert res.test.metrics == res.base.test.metrics


def test_default_umap_reducer_end_to_end(tmp_path, small):
    pytest.importorskip("umap")
    ds, vec = small
    cfg = _cfg(tmp_path, vec)
    cfg["transfer"]["reducer"] = {"n_neighbors": 5}  # method defaults to umap
    res = llmkt.train(cfg, data=ds)
    assert res.transfer["reducer"] == "umap" and res.transfer["vector_dim"] == 16
    assert res.transfer["reducer_fitted_on"] == 30  # the 30 training users that have a vector


@pytest.mark.parametrize("model, transfer, normalized", [
    ({"name": "multvae", "hidden": 12, "latent": 8}, {}, True),  # its loss sums over items: normalised by default
    ({"name": "multvae", "hidden": 12, "latent": 8}, {"normalize_model_loss": False}, False),
    ({"name": "multvae", "hidden": 12, "latent": 8}, {"dynamic_beta": True}, False),  # dynamic beta balances instead
    ({"name": "sasrec", "max_len": 10, "hidden": 16, "n_heads": 2}, {}, False)])
def test_the_model_loss_is_normalised_by_default_only_where_it_sums_over_items(tmp_path, small, model, transfer,
                                                                              normalized):
    ds, vec = small
    cfg = _cfg(tmp_path, vec, **transfer)
    cfg["model"] = model
    res = llmkt.train(cfg, data=ds)
    assert res.transfer["normalize_model_loss"] is normalized
    h = res.history[0]
    expected = 0.5 * h["kt/beta"] * h["kt/L_kt"] / (0.5 * h["kt/beta"] * h["kt/L_kt"] + 0.5 * (1.0 if normalized else h["kt/L_model"]))
    # the logged share is the mean of per-batch shares' parts: compare within a loose bound, and the regime exactly
    assert h["kt/share"] == pytest.approx(expected, rel=0.2)
    if model["name"] == "multvae" and not transfer:
        assert h["kt/L_model"] > 10 and h["kt/share"] > 0.1  # not drowned (static: L_model in the tens here)
