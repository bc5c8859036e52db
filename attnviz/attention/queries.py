"""The class query a scorer is asked with: the classifier's row for the class, or the class score's gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from attnviz.models.base import Encoder
from attnviz.options import Query


def class_queries(encoder: Encoder, query: Query, features: Tensor, logits: Tensor, chosen: list[list[int]]) -> Tensor:
    """(M, C) queries, one per requested map, in image-then-class order.

    Gradient queries sum d(logit_c)/d(h_i) over the cells: N times Grad-CAM's channel weights, which for a
    pool-then-linear head is exactly the classifier row, so both kinds of query give the same map there.
    """
    if query is Query.classifier:
        vectors = encoder.class_vectors()
        assert vectors is not None
        flat = torch.tensor([c for wanted in chosen for c in wanted], device=vectors.device)
        return vectors[flat].detach()
    rows = []
    for i, wanted in enumerate(chosen):
        for c in wanted:
            (grad,) = torch.autograd.grad(logits[i, c], features, retain_graph=True)  # (B, C, H', W')
            rows.append(grad[i].sum(dim=(1, 2)))  # (C,)
    return torch.stack(rows).detach()
