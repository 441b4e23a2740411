import torch
import torch.nn.functional as F

from llmkt.models.losses import linear_cross_entropy


def test_fused_cross_entropy_matches_reference_value_and_gradients():
    torch.manual_seed(0)
    h = torch.randn(1000, 16, requires_grad=True)
    w = torch.randn(300, 16, requires_grad=True)
    t = torch.randint(0, 300, (1000,))
    ref = F.cross_entropy(h @ w.T, t)
    g_ref = torch.autograd.grad(ref * 3.0, [h, w])
    got = linear_cross_entropy(h, w, t, chunk=128)  # several chunks, last one partial
    g_got = torch.autograd.grad(got * 3.0, [h, w])
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(g_got[0], g_ref[0], atol=1e-6) and torch.allclose(g_got[1], g_ref[1], atol=1e-6)


def test_fused_cross_entropy_without_grad_and_empty():
    w = torch.randn(5, 3)
    with torch.no_grad():
        v = linear_cross_entropy(torch.randn(4, 3), w, torch.tensor([0, 1, 2, 3]))
    assert v.ndim == 0 and v > 0
    assert linear_cross_entropy(torch.zeros(0, 3), w, torch.zeros(0, dtype=torch.long)).item() == 0.0
