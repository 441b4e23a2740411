"""Item-side transfer: an item table's rows for the batch's items reconstruct item vectors; gradients reach only
those rows (and the alignment); items without a vector contribute nothing; the runner trains it for pair and
sequential models."""

import numpy as np
import pytest
import torch

import llmkt
from llmkt.data import Dataset, ProfileVectors
from llmkt.errors import ConfigError
from llmkt.models.bprmf import BPRMF
from llmkt.models.lightgcn import LightGCN
from llmkt.transfer import default_layer
from llmkt.transfer.callback import ItemKnowledgeTransfer, TransferSettings, batch_items, item_tables
from tests.conftest import random_interactions

N_ITEMS, N_USERS = 20, 5
BATCH = {"uid": torch.tensor([1, 2, 3]), "pos": torch.tensor([4, 5, 6]), "neg": torch.tensor([[1, 2], [7, 8], [9, 0]])}


def test_batch_items_are_the_distinct_ids_of_every_item_key():
    assert batch_items(BATCH).tolist() == [1, 2, 4, 5, 6, 7, 8, 9]
    assert batch_items({"uid": torch.tensor([1]), "seq": torch.tensor([[0, 0, 3, 3, 5]])}).tolist() == [3, 5]
    rows = torch.zeros(2, N_ITEMS + 1)
    rows[0, 2] = rows[1, 7] = 1.0
    assert batch_items({"uid": torch.tensor([1, 2]), "items": rows}).tolist() == [2, 7]


@pytest.mark.parametrize("make", [lambda: BPRMF(N_ITEMS, N_USERS, dim=8, n_negatives=2),
                                  lambda: _graph(LightGCN(N_ITEMS, N_USERS, dim=8, n_layers=2, n_negatives=2))])
def test_the_item_loss_reaches_only_the_batch_rows_with_a_vector(make):
    torch.manual_seed(0)
    m = make()
    mask = torch.ones(N_ITEMS + 1, dtype=torch.bool)
    mask[[0, 5, 7]] = False  # items 5 and 7 have no vector
    kt = ItemKnowledgeTransfer(m, torch.randn(N_ITEMS + 1, 8), mask, TransferSettings(layer=default_layer(m, "item"),
                                                                                      alpha=1.0), n_items=N_ITEMS)
    kt.build(width=8)
    kt.on_epoch_start(None, 1)
    kt.on_loss(None, BATCH, m.loss(BATCH).detach()).backward()  # alpha 1: L_kt alone
    rows = m.item_emb.weight.grad.abs().sum(1)
    assert torch.nonzero(rows).reshape(-1).tolist() == [1, 2, 4, 6, 8, 9]  # batch items with a vector
    assert m.user_emb.weight.grad is None or m.user_emb.weight.grad.abs().sum() == 0
    logs = kt.epoch_logs(None)
    assert logs["kt/active"] == 1.0 and logs["kt/coverage"] == pytest.approx(6 / 8)
    kt.detach()


def test_item_rows_all_aligns_items_that_no_batch_holds():
    torch.manual_seed(0)
    m = BPRMF(N_ITEMS, N_USERS, dim=8, n_negatives=2)
    mask = torch.ones(N_ITEMS + 1, dtype=torch.bool)
    mask[[0, 5, 13]] = False  # items 5 and 13 have no vector
    kt = ItemKnowledgeTransfer(m, torch.randn(N_ITEMS + 1, 8), mask, TransferSettings(layer="item_emb", alpha=1.0),
                               n_items=N_ITEMS, rows="all")
    kt.build(width=8)
    kt.on_epoch_start(None, 1)
    kt.on_loss(None, BATCH, m.loss(BATCH).detach()).backward()
    rows = m.item_emb.weight.grad.abs().sum(1)
    expected = [i for i in range(1, N_ITEMS + 1) if i not in (5, 13)]  # every item with a vector, batch or not
    assert torch.nonzero(rows).reshape(-1).tolist() == expected
    assert kt.epoch_logs(None)["kt/coverage"] == 1.0
    with pytest.raises(ConfigError, match="transfer.item_rows: expected batch or all, got 'some'"):
        ItemKnowledgeTransfer(m, torch.zeros(N_ITEMS + 1, 8), mask, TransferSettings(layer="item_emb"),
                              n_items=N_ITEMS, rows="some")
    kt.detach()


def _graph(m):
    m.set_graph(torch.tensor([1, 1, 2, 3, 4, 5]), torch.tensor([1, 4, 5, 6, 8, 9]))
    return m


def test_item_side_needs_an_item_table_and_names_the_ones_there():
    m = BPRMF(N_ITEMS, N_USERS, dim=8)
    assert item_tables(m, N_ITEMS) == ["item_emb"]
    with pytest.raises(ConfigError, match=r"is no item table; name an Embedding with 21 rows .*\['item_emb'\]"):
        ItemKnowledgeTransfer(m, torch.zeros(N_ITEMS + 1, 8), torch.ones(N_ITEMS + 1, dtype=torch.bool),
                              TransferSettings(layer="user_emb"), n_items=N_ITEMS)


@pytest.fixture
def data(tmp_path):
    ds = Dataset.from_frames(random_interactions(n_users=40, n_items=30, per_user=10), name="small")
    rng = np.random.default_rng(0)
    items = ProfileVectors(ds.item_map.external_ids[:24], rng.normal(size=(24, 16)),
                           {"dataset": "small", "entity": "item"})  # 24 of 30 items have a vector
    users = ProfileVectors(ds.user_map.external_ids, rng.normal(size=(40, 16)), {"dataset": "small"})
    return ds, items.save(tmp_path / "items.npz"), users.save(tmp_path / "users.npz")


@pytest.mark.parametrize("model, layer, width", [
    ({"name": "bprmf", "dim": 8}, "item_emb", 8),
    ({"name": "lightgcn", "dim": 8, "n_layers": 2}, "item_emb", 8),
    ({"name": "sasrec", "max_len": 10, "hidden": 8, "n_heads": 2}, "item_emb", 8),
    ({"name": "bert4rec", "max_len": 10, "hidden": 8, "n_heads": 2}, "item_emb", 8),  # + a mask-token row
    ({"name": "multvae", "hidden": 12, "latent": 8}, "decoder.2", 12),  # the output layer's weight rows
    ({"name": "neumf", "gmf_dim": 8, "mlp_dims": [8, 4]}, "item_gmf", 8),
    ({"name": "simplex", "dim": 8, "hist_len": 5, "n_negatives": 5}, "item_emb", 8)])
def test_the_runner_trains_item_side_transfer(tmp_path, data, model, layer, width):
    ds, items, _ = data
    cfg = {"model": model, "training": {"epochs": 4, "batch_size": 16, "progress": False, "seed": 3},
           "output": {"dir": str(tmp_path / "runs")},
           "transfer": {"side": "item", "vectors": {"path": str(items)}, "reducer": {"method": "pca"},
                        "compare_base": False}}
    res = llmkt.train(cfg, data=ds)
    assert (res.transfer["side"], res.transfer["layer"], res.transfer["vector_dim"]) == ("item", layer, width)
    assert res.transfer["coverage"] == pytest.approx(0.8)
    assert [h["kt/active"] for h in res.history] == [1.0, 1.0, 0.0, 0.0]
    assert all(h["kt/L_kt"] > 0 for h in res.history[:2]) and 0 <= res.test.metrics["NDCG@10"] <= 1


def test_item_rows_all_aligns_cold_items_in_training(tmp_path, data):
    """Under the cold-start protocol (cold items keep no training interaction) only item_rows: all brings the cold
    items' table rows towards their (reduced) vectors: alignment fixed, so a row's distance to its target is the
    transfer loss itself."""
    from llmkt.transfer.reduce import Reducer

    ds, items, _ = data
    vecs = ProfileVectors.load(items)
    raw, has_vec = vecs.aligned(ds, "item")
    dist = {}
    for rows in ("batch", "all"):
        cfg = {"model": {"name": "bprmf", "dim": 8},
               "training": {"epochs": 5, "batch_size": 16, "lr": 0.05, "progress": False, "seed": 3},
               "evaluation": {"slices": {"cold_items": {"share": 0.5, "keep": 0, "seed": 1}}},
               "output": {"dir": str(tmp_path / rows)},
               "transfer": {"side": "item", "item_rows": rows, "vectors": {"path": str(items)},
                            "reducer": {"method": "pca"}, "alpha": 0.9, "compare_base": False,
                            "schedule": [{"step": "transfer", "fraction": 1.0}]}}
        res = llmkt.train(cfg, data=ds)
        cold = ds.item_map.to_internal(np.asarray(res.split.params["cold_items"]["item_ids"]))
        cold = cold[has_vec[cold]]
        assert len(cold) >= 3 and not set(cold.tolist()) & set(res.split.train["iid"].tolist())
        target = Reducer.load(res.run_dir / "reducer.npz").transform(raw[cold])
        table = res.model.item_emb.weight.detach().numpy()[cold]
        dist[rows] = float(np.sqrt(((table - target) ** 2).sum(1)).mean())
        assert res.transfer["item_rows"] == rows
    assert dist["all"] < 0.5 * dist["batch"], dist


def test_item_rows_is_refused_on_the_user_side(tmp_path, data):
    ds, _, users = data
    cfg = {"model": {"name": "bprmf", "dim": 8}, "training": {"epochs": 2, "progress": False},
           "output": {"dir": str(tmp_path / "runs")},
           "transfer": {"item_rows": "all", "vectors": {"path": str(users)}, "compare_base": False}}
    with pytest.raises(ConfigError, match="transfer.item_rows: 'all' applies to the item side"):
        llmkt.train(cfg, data=ds)


def test_item_vectors_on_the_user_side_are_refused(tmp_path, data):
    ds, items, _ = data
    cfg = {"model": {"name": "bprmf", "dim": 8}, "training": {"epochs": 2, "progress": False},
           "output": {"dir": str(tmp_path / "runs")},
           "transfer": {"vectors": {"path": str(items)}, "reducer": {"method": "pca"}, "compare_base": False}}
    with pytest.raises(ConfigError, match="these are item vectors but transfer.side is 'user'"):
        llmkt.train(cfg, data=ds)


def test_both_sides_at_once_wrap_one_loss_each_with_its_own_logs_and_reducer(tmp_path, data):
    import pandas as pd

    ds, items, users = data
    cfg = {"model": {"name": "bprmf", "dim": 8}, "training": {"epochs": 4, "batch_size": 16, "progress": False},
           "output": {"dir": str(tmp_path / "runs")},
           "transfer": {"vectors": {"path": str(users)}, "reducer": {"method": "pca"}, "alpha": 0.3,
                        "compare_base": False,
                        "item": {"vectors": {"path": str(items)}, "reducer": {"method": "pca"}, "alpha": 0.2,
                                 "loss": "infonce", "item_rows": "all"}}}
    res = llmkt.train(cfg, data=ds)
    assert res.transfer["layer"] == "user_emb" and res.transfer["item"]["layer"] == "item_emb"
    assert res.transfer["item"]["side"] == "item" and res.transfer["item"]["coverage"] == pytest.approx(0.8)
    assert res.transfer["item"]["item_rows"] == "all" and "item_rows" not in res.transfer  # the user side has none
    rows = pd.read_csv(res.run_dir / "metrics.csv")
    assert rows["kt/active"].tolist() == rows["kt_item/active"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert (rows["kt_item/L_kt"].iloc[:2] > 0).all() and (rows["kt/L_kt"].iloc[:2] > 0).all()
    # the item side wraps the user side's combined loss: its "L_model" is that loss
    assert rows["kt_item/L_model"].iloc[0] != pytest.approx(rows["kt/L_model"].iloc[0])
    assert (res.run_dir / "reducer.npz").exists() and (res.run_dir / "reducer_item.npz").exists()
    bad = dict(cfg, transfer={**cfg["transfer"], "side": "item"})
    with pytest.raises(ConfigError, match="with side: item leave transfer.item out"):
        llmkt.train(bad, data=ds)


def test_item_metadata_text_is_an_item_side_source_without_an_llm(tmp_path):
    import os

    import pandas as pd

    from llmkt.profiles.weights import weights_path

    if not (weights_path("all-minilm-l6-v2").parent / ".verified").exists() and not os.environ.get("LLMKT_REQUIRE_LLM"):
        pytest.skip("all-minilm-l6-v2 not fetched")
    inter = random_interactions(n_users=30, n_items=12, per_user=6)
    ids = sorted(inter["item_id"].unique())
    items = pd.DataFrame({"item_id": ids, "title": [f"Book number {i}" for i in range(len(ids))],
                          "genres": ["Drama|War" if i % 2 else "Comedy" for i in range(len(ids))]})
    ds = Dataset.from_frames(inter, items, name="titled")
    cfg = {"model": {"name": "bprmf", "dim": 8}, "training": {"epochs": 2, "batch_size": 16, "progress": False},
           "output": {"dir": str(tmp_path / "runs")},
           "transfer": {"side": "item", "vectors": {"item_text": "all-minilm-l6-v2"}, "reducer": {"method": "pca"},
                        "compare_base": False}}
    res = llmkt.train(cfg, data=ds)
    assert (res.transfer["coverage"], res.transfer["vector_dim_in"], res.transfer["vector_dim"]) == (1.0, 384, 8)
    assert res.history[0]["kt/L_kt"] > 0
    cfg["transfer"]["side"] = "user"
    with pytest.raises(ConfigError, match="these are item vectors but transfer.side is 'user'"):
        llmkt.train(cfg, data=ds)
    with pytest.raises(ConfigError, match="exactly one of path"):
        llmkt.train({**cfg, "transfer": {"vectors": {"item_text": "x", "path": "v.npz"}}}, data=ds)
