"""``Recommender.item_embeddings()``: the item table a model ranks with, or None."""

from __future__ import annotations

import torch

from llmkt.models.bert4rec import BERT4Rec
from llmkt.models.bprmf import BPRMF
from llmkt.models.multvae import MultVAE
from llmkt.models.sasrec import SASRec


def test_sequential_item_tables_are_what_scores_are_made_of():
    torch.manual_seed(0)
    sas = SASRec(12, max_len=5, hidden=8, n_blocks=1, n_heads=1, dropout=0.0).eval()
    table = sas.item_embeddings()
    assert table.shape == (13, 8) and table.data_ptr() == sas.item_emb.weight.data_ptr()
    batch = {"seq": torch.tensor([[0, 1, 2, 3, 4]])}
    with torch.no_grad():
        torch.testing.assert_close(sas.score(batch)[:, 1:], (sas.user_representation(batch) @ table.T)[:, 1:])
    bert = BERT4Rec(12, max_len=5, hidden=8, n_blocks=1, n_heads=1)
    assert bert.item_embeddings().shape == (13, 8)  # the [MASK] row is not an item


def test_pair_models_have_a_table_and_user_row_models_none():
    bpr = BPRMF(n_users=4, n_items=12, dim=8)
    assert bpr.item_embeddings().shape == (13, 8)
    assert MultVAE(12).item_embeddings() is None
