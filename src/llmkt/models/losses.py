"""Losses shared by models.

``linear_cross_entropy(h, weight, targets)`` equals ``F.cross_entropy(h @ weight.T, targets)`` but never holds
the full ``(N, n_items)`` logit matrix: it walks over row chunks, and when gradients are needed it computes
them in the same pass (softmax minus one-hot, then two small products) and keeps only ``dL/dh`` ``(N, D)`` and
``dL/dW`` ``(V, D)``. On CPU this is memory-bandwidth bound, so keeping a chunk in cache is what makes it fast
(measured in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import torch


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int):
        # h: (N, D); weight: (V, D); targets: (N,) in [0, V)
        n = h.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        total = h.new_zeros((), dtype=torch.float32)
        grad_h = torch.empty_like(h) if need_grad else None
        grad_w = torch.zeros_like(weight) if need_grad else None
        for s in range(0, n, chunk):
            hc, tc = h[s:s + chunk], targets[s:s + chunk]
            logits = (hc @ weight.T).float()  # (C, V)
            target_logit = logits.gather(1, tc[:, None]).squeeze(1)  # (C,)
            top = logits.amax(dim=1, keepdim=True)  # (C, 1)
            exps = logits.sub_(top).exp_()  # in place: exp(logit - max), (C, V)
            norm = exps.sum(dim=1, keepdim=True)  # (C, 1)
            total += (top.squeeze(1) + norm.log().squeeze(1) - target_logit).sum()
            if need_grad:
                probs = exps.div_(norm)  # softmax, (C, V)
                probs[torch.arange(len(tc), device=h.device), tc] -= 1.0
                probs = probs.to(h.dtype)
                grad_h[s:s + chunk] = probs @ weight  # (C, D)
                grad_w.addmm_(probs.T, hc)  # (V, D)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.n = n
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n
        gh = grad_h * scale if ctx.needs_input_grad[0] else None
        gw = grad_w * scale if ctx.needs_input_grad[1] else None
        return gh, gw, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk: int = 512) -> torch.Tensor:
    """Mean cross-entropy of ``h @ weight.T`` against ``targets`` without materialising all logits."""
    if h.shape[0] == 0:
        return h.sum() * 0.0 + weight.sum() * 0.0
    return _LinearCrossEntropy.apply(h, weight, targets, chunk)
