import math

import pytest
import torch
from torch import nn

from llmkt.errors import ConfigError
from llmkt.models import SASRec
from llmkt.transfer.layers import find_layer
from llmkt.transfer.pooling import AttentionPool, last_position, masked_mean, recency_pool, recency_weights

# batch of 2, length 3, dim 2; row 0 has one padding position in front
H = torch.tensor([[[100.0, 100.0], [1.0, 2.0], [3.0, 4.0]],
                  [[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])
MASK = torch.tensor([[False, True, True], [True, True, True]])


def test_masked_mean_ignores_padding_exactly():
    assert torch.equal(masked_mean(H, MASK), torch.tensor([[2.0, 3.0], [1.0, 1.0]]))


def test_recency_weights_and_pool():
    w = recency_weights(MASK, 0.5)
    assert torch.allclose(w[0], torch.tensor([0.0, 1 / 3, 2 / 3]))
    assert torch.allclose(w[1], torch.tensor([1 / 7, 2 / 7, 4 / 7]))
    assert torch.allclose(recency_pool(H, MASK, 0.5)[0], torch.tensor([7 / 3, 10 / 3]))


def test_last_and_attention_pool_ignore_padding():
    assert torch.equal(last_position(H, MASK), H[:, -1])
    pool = AttentionPool(2)  # zero query: uniform attention over real positions = masked mean
    assert torch.allclose(pool(H, MASK), masked_mean(H, MASK))
    with torch.no_grad():
        pool.query.copy_(torch.tensor([1.0, 0.0]))
    out = pool(H, MASK)
    s = torch.tensor([1.0, 3.0]) / math.sqrt(2)
    w = torch.softmax(s, 0)
    assert torch.allclose(out[0], w[0] * H[0, 1] + w[1] * H[0, 2])  # the 100s never enter


def test_find_layer_exact_suffix_regex_and_errors():
    m = SASRec(10, max_len=4, hidden=8)
    assert find_layer(m, "blocks.1")[0] == "blocks.1"
    assert find_layer(m, "1.ffn")[0] == "blocks.1.ffn"
    with pytest.raises(ConfigError, match="matches 2 layers"):
        find_layer(m, r"re:blocks\.0\.ffn\.fc\d")
    with pytest.raises(ConfigError, match=r"no layer of SASRec matches 'blocks.7'.*available layers: item_emb"):
        find_layer(m, "blocks.7")
    with pytest.raises(ConfigError, match="matches 2 layers"):
        find_layer(m, "ffn")
    with pytest.raises(ConfigError, match="invalid regex"):
        find_layer(m, "re:([")
    assert isinstance(find_layer(m, "re:final_.*")[1], nn.LayerNorm)
