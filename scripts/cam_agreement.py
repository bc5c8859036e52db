"""How closely attnviz's CAM modes draw pytorch-grad-cam's maps: same encoder, layer, input and class.

For each mode, `attnviz run PHOTO --mode M --save-scores` gives the grid's weights; pytorch-grad-cam (the `bench`
extra) computes its map on the very input tensor `run` feeds the network, on the eager (unfolded) copy of the encoder
with the same target layer. Two Pearson correlations per mode:

- grid: attnviz's weights, min-max scaled and resized to the input as pytorch-grad-cam resizes its own (cv2), against
  its map: do the formulas agree?
- drawn: the map `attnviz run` draws over the photo (median-to-maximum display, smoothing) against pytorch-grad-cam's
  map resized to the photo as its README shows it: do the pictures agree?

    .venv/bin/python scripts/cam_agreement.py sample_images/chelsea.png --size 448
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from attnviz.cli import main as attnviz_main
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.models.registry import create_encoder
from attnviz.options import CAM_MODES, DEFAULT_ENCODER, Mode


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def reference_cam(mode: Mode, model: Any, layer: Any, x: torch.Tensor, target: int, raw: bool = False) -> np.ndarray:
    """pytorch-grad-cam's (h, w) map for the (1, 3, h, w) input, as its README computes it. Its EigenCAM keeps the
    sign the SVD returns, which is arbitrary; unless `raw`, eigencam is its projection with its own sign correction
    (`get_2d_projection_with_sign_correction`, Seg-Eigen-CAM's rule, which attnviz applies)."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

    class SignedEigenCAM(pgc.EigenCAM):  # type: ignore[misc]
        def get_cam_image(self, *args: Any) -> np.ndarray:
            return get_2d_projection_with_sign_correction(args[3])  # the activations

    kinds = {
        Mode.gradcam: pgc.GradCAM,
        Mode.gradcam_pp: pgc.GradCAMPlusPlus,
        Mode.layercam: pgc.LayerCAM,
        Mode.scorecam: pgc.ScoreCAM,
        Mode.eigencam: pgc.EigenCAM if raw else SignedEigenCAM,
    }
    cam = kinds[mode](model=model, target_layers=[layer])
    if mode is Mode.scorecam:
        cam.batch_size = 32
    return np.asarray(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0])


@functools.cache
def _eager() -> Encoder:
    """The encoder unfolded (batch norms kept), its weights trainable: as a user of pytorch-grad-cam has it."""
    eager = create_encoder(DEFAULT_ENCODER, fast=False)
    eager.requires_grad_(True)
    return eager


def agreement(photo: Path, mode: Mode, size: int, layer: str | None = None, raw: bool = False) -> tuple[float, float]:
    """(grid, drawn) Pearson correlations between attnviz's and pytorch-grad-cam's maps of `photo`."""
    import cv2

    image = Image.open(photo).convert("RGB")
    eager = _eager()
    x = eager.preprocess(image, size)[None]  # what `run` feeds the network at --size
    model: Any = eager.model
    with torch.no_grad():
        target = int(model(x).argmax())
    module = model.get_submodule(layer) if layer else model.bn2  # bn2: conv_head's BN + ReLU6, attnviz's features
    theirs = reference_cam(mode, model, module, x, target, raw)  # (h, w), min-max, at the input's size
    extra = ["--layer", layer] if layer else []
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "map.png"
        args = [str(photo), "--mode", mode.value, "--size", str(size), "--target", str(target), *extra]
        code = attnviz_main(["run", *args, "--save-scores", "--quiet", "-o", str(out)])
        if code != 0:
            raise SystemExit(f"attnviz run {' '.join(args)} failed with status {code}")
        grid = np.load(out.with_suffix(".npy"))
    grid = (grid - grid.min()) / (grid.max() - grid.min() + 1e-7)
    ours = cv2.resize(grid.astype(np.float32), (theirs.shape[1], theirs.shape[0]))
    drawn = Explainer(DEFAULT_ENCODER, mode, size, layer=layer).explain(image, target).heatmap  # run's picture
    shown = cv2.resize(theirs, (image.width, image.height))
    return pearson(ours, theirs), pearson(drawn, shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--layer", default=None, help="Target layer by module name (default: bn2, the last map).")
    parser.add_argument("--modes", nargs="*", default=[m.value for m in CAM_MODES])
    parser.add_argument("--raw-eigencam", action="store_true", help="Against EigenCAM's SVD sign as it comes.")
    args = parser.parse_args()
    print(f"{'mode':<10} {'grid r':>7} {'drawn r':>8}   ({args.photo.name}, --size {args.size}, layer {args.layer})")
    for name in args.modes:
        grid, drawn = agreement(args.photo, Mode(name), args.size, args.layer, args.raw_eigencam)
        print(f"{name:<10} {grid:>7.4f} {drawn:>8.4f}")


if __name__ == "__main__":
    main()
