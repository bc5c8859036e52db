"""The CAM family on an encoder's feature map: class activation maps as users of pytorch-grad-cam know them.

Each map is `relu(sum over channels k of w_k * A_k)` over the feature map `A` (B, C, H, W), for a class score `y`
(the raw logit, before the softmax, as pytorch-grad-cam differentiates it); they differ in the weights:

- `gradcam` (Selvaraju et al. 2017): `w_k` = the mean over cells of dy/dA_k.
- `gradcam++` (Chattopadhay et al. 2018): `w_k = sum_ij relu(g_ij) * a_ij`, `a_ij = g^2 / (2 g^2 + sum_ij A * g^3)`
  with `g = dy/dA_k` (zero where `g` is), the closed form for an exponential score, as pytorch-grad-cam computes it.
- `layercam` (Jiang et al. 2021): a weight per cell, `relu(dy/dA)`, so `sum_k relu(g_kij) * A_kij`.
- `scorecam` (Wang et al. 2020): no gradient; each channel, upsampled to the input (bilinear, corners aligned) and
  min-max scaled, masks the (normalised) input; `w` is the softmax over channels of the class logits of the masked
  inputs. One forward pass per channel (batched by `SCORE_CHUNK`): by far the slowest mode.
- `eigencam` (Muhammad and Yeasin 2020): no class; the projection of the centred cells on their first principal
  component, its sign chosen so that its largest magnitude is positive (Seg-Eigen-CAM's correction; plain SVD's
  sign is arbitrary).

The grid contract (`weights_and_scores`): a CAM is linear evidence, not a log-probability, so its `scores` are the
CAM over its maximum (in [0, 1]; the drawing code stretches the median-to-maximum range, which for a CAM that is
zero on half of the cells or more is pytorch-grad-cam's min-max), and its `weights` the CAM over its sum (uniform
where the CAM is zero everywhere).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from attnviz.models.base import Encoder
from attnviz.options import GRADIENT_CAM_MODES, Mode

#: Masked pictures per forward pass in scorecam.
SCORE_CHUNK = 32
#: pytorch-grad-cam's guards: Grad-CAM++'s denominator, Score-CAM's min-max span.
_EPS_PP = 1e-6
_EPS_SPAN = 1e-8

#: (B, C, H, W) features and their gradients -> (B, H, W) map before the ReLU.
GradientCam = Callable[[Tensor, Tensor], Tensor]


def grad_cam(features: Tensor, grads: Tensor) -> Tensor:
    return (grads.mean(dim=(2, 3), keepdim=True) * features).sum(dim=1)


def grad_cam_pp(features: Tensor, grads: Tensor) -> Tensor:
    squared = grads**2
    total = features.sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    alpha = squared / (2 * squared + total * squared * grads + _EPS_PP)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (grads.clamp_min(0) * alpha).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    return (weights * features).sum(dim=1)


def layer_cam(features: Tensor, grads: Tensor) -> Tensor:
    return (grads.clamp_min(0) * features).sum(dim=1)


GRADIENT_CAMS: dict[Mode, GradientCam] = {
    Mode.gradcam: grad_cam,
    Mode.gradcam_pp: grad_cam_pp,
    Mode.layercam: layer_cam,
}


def eigen_cam(features: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H, W): each cell's projection on the first principal component of the centred cells."""
    b, _, h, w = features.shape
    cells = features.flatten(2).transpose(1, 2).double()  # (B, N, C)
    centred = cells - cells.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # (B, min(N, C), C)
    projection = (centred @ vh[:, 0, :, None])[..., 0]  # (B, N)
    flip = projection.amin(dim=1).abs() > projection.amax(dim=1).abs()
    projection = torch.where(flip[:, None], -projection, projection)
    return projection.reshape(b, h, w).to(features.dtype)


def score_cam_weights(
    forward: Callable[[Tensor], Tensor], x: Tensor, features: Tensor, classes: list[int], chunk: int = SCORE_CHUNK
) -> Tensor:
    """(len(classes), C) Score-CAM channel weights for one (3, h, w) input and its (C, H, W) features; `forward`
    gives (n, K) logits for (n, 3, h, w) inputs. A constant channel masks everything out (as pytorch-grad-cam's
    min-max over a zero span does): its score is the blank input's, computed once."""
    blank: Tensor | None = None
    scores = []
    for start in range(0, features.shape[0], chunk):
        part = F.interpolate(
            features[None, start : start + chunk].float(), size=x.shape[-2:], mode="bilinear", align_corners=True
        )[0]  # (c, h, w)
        low, high = part.amin(dim=(1, 2), keepdim=True), part.amax(dim=(1, 2), keepdim=True)
        masks = (part - low) / (high - low + _EPS_SPAN)
        varied = (high - low).flatten() > 0
        logits = torch.empty(part.shape[0], len(classes), device=x.device)
        if not varied.all():
            if blank is None:
                blank = forward(torch.zeros_like(x)[None])[0, classes].float()
            logits[~varied] = blank
        if varied.any():
            logits[varied] = forward(x[None] * masks[varied, None])[:, classes].float()
        scores.append(logits)
    return torch.softmax(torch.cat(scores).T, dim=1)  # (classes, C)


def weights_and_scores(cams: Tensor) -> tuple[Tensor, Tensor]:
    """(M, N) CAMs -> (M, N) weights (the ReLU'd CAM over its sum, uniform when it is all zero) and scores (over
    its maximum: in [0, 1], zero everywhere when the CAM is)."""
    cams = cams.float().clamp_min(0)
    top, total = cams.amax(dim=1, keepdim=True), cams.sum(dim=1, keepdim=True)
    scores = torch.where(top > 0, cams / top.clamp_min(1e-30), torch.zeros_like(cams))
    uniform = torch.full_like(cams, 1.0 / cams.shape[1])
    return torch.where(total > 0, cams / total.clamp_min(1e-30), uniform), scores


class ClassActivation:
    """One CAM mode on one encoder: features (and the pass's logits, input) -> (M, N) weights and scores."""

    def __init__(self, encoder: Encoder, mode: Mode, chunk: int = SCORE_CHUNK) -> None:
        self.encoder = encoder
        self.mode = mode
        self.chunk = chunk

    @property
    def needs_gradients(self) -> bool:
        return self.mode in GRADIENT_CAM_MODES

    def maps(self, x: Tensor, features: Tensor, logits: Tensor, chosen: list[list[int]]) -> tuple[Tensor, Tensor]:
        """One row per requested map, in image-then-class order. With gradients, `features` must be what `logits`
        were computed from (`encoder(x, track_features=True)`), on a graph kept for one backward pass per rank."""
        return weights_and_scores(self.cams(x, features, logits, chosen).flatten(1))

    def cams(self, x: Tensor, features: Tensor, logits: Tensor, chosen: list[list[int]]) -> Tensor:
        """(M, H, W) CAMs before the ReLU."""
        if self.mode is Mode.eigencam:
            maps = eigen_cam(features.detach().float())  # (B, H, W): the same for every class
            return torch.stack([maps[i] for i, wanted in enumerate(chosen) for _ in wanted])
        if self.mode is Mode.scorecam:
            return torch.cat([self._score_cam(x[i], features[i].detach(), wanted) for i, wanted in enumerate(chosen)])
        formula = GRADIENT_CAMS[self.mode]
        per_rank: list[dict[int, Tensor]] = []
        for rank in range(max(len(wanted) for wanted in chosen)):  # one backward pass for all images
            images = [i for i, wanted in enumerate(chosen) if len(wanted) > rank]
            picked = [chosen[i][rank] for i in images]
            (grads,) = torch.autograd.grad(logits[images, picked].sum(), features, retain_graph=True)
            cams = formula(features.detach()[images].float(), grads[images].float())  # (b, H, W)
            per_rank.append(dict(zip(images, cams, strict=True)))
        return torch.stack([per_rank[r][i] for i, wanted in enumerate(chosen) for r in range(len(wanted))])

    def _score_cam(self, x: Tensor, features: Tensor, classes: list[int]) -> Tensor:
        def forward(batch: Tensor) -> Tensor:
            with torch.inference_mode():
                return self.encoder(batch)[1]

        weights = score_cam_weights(forward, x, features, classes, self.chunk)  # (classes, C)
        return torch.einsum("kc,chw->khw", weights, features.float())
