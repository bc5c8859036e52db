"""The encoder interface: a feature map and class logits, with the preprocessing its weights expect."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from attnviz.errors import ComputeError, UsageError
from attnviz.models.grids import DISCOVERY_STRIDE, as_grid
from attnviz.options import TRAINED_SIZE

if TYPE_CHECKING:
    from PIL import Image

#: Longest side fed to the network (unless 4 x --size is longer): extreme aspect ratios shrink instead.
MAX_SIDE = 4096


#: Side of the probe picture that measures the feature map's channels and stride: large enough that every
#: common network (stride up to 64) still has a grid of cells there.
GEOMETRY_PROBE = 256
#: Side of the probes that list layers and check folded batch norms: small and fast (a 4 x 4 grid at stride 32),
#: yet large enough for networks whose kernels need 75 px (Inception).
SMALL_PROBE = 128
#: A picture more than this many times the network input's size is box-reduced before it is resampled.
_REDUCING_GAP = 3.0


IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


class Encoder(nn.Module):
    """Feature extractor plus classifier head, with the preprocessing its weights were trained with."""

    def __init__(
        self,
        name: str,
        labels: list[str],
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        resample: str = "bicubic",
        feature_bound: float | None = None,
        trained_size: int = TRAINED_SIZE,
    ) -> None:
        super().__init__()
        self.name = name
        self.labels = labels
        self.mean = mean
        self.std = std
        self.resample = resample
        #: Typical largest feature value (6 for ReLU6 networks); scales the default concat scorer. None: measure.
        self.feature_bound = feature_bound
        #: Input side the weights were trained at: the top-k and probabilities come from a pass at this scale.
        self.trained_size = trained_size
        self.layer: str | None = None  # a chosen intermediate feature map, by module name
        self._geometry: tuple[int, int] | None = None
        #: The one square input size of a model that takes no other (torchvision's ViT); None: any size.
        self.fixed_size: int | None = None
        self._channels_last = False
        #: Sides of the probe pictures (see SMALL_PROBE, GEOMETRY_PROBE); a model whose patches must divide its
        #: input (timm's ViT-S/14) gets multiples of 14 instead.
        self.probe_sides = (SMALL_PROBE, GEOMETRY_PROBE)
        #: A backbone without a classifier (timm's `num_classes=0`): its output is features, not class scores, so
        #: it has no labels and draws only the modes that need no class (a transformer's own attention).
        self.headless = False

    # -- what subclasses provide ----------------------------------------------------------------------------

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised pixels -> (B, C, H', W') last spatial feature map."""
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        """(B, C, H', W') -> (B, K) class logits."""
        raise NotImplementedError

    def classifier(self) -> nn.Linear | None:
        """The final linear layer, when the head is pool-then-linear (checked numerically, see `class_vectors`)."""
        return None

    # -- shared machinery -----------------------------------------------------------------------------------

    def forward(self, x: Tensor, track_features: bool = False) -> tuple[Tensor, Tensor]:
        """(features, logits). With `track_features` the features are a leaf that the logits can be differentiated by.

        With `layer` set, the features are that module's output instead of the last map. A network that cannot run
        on this input (too small for its kernels, a size its attention windows do not divide) is a one-line error.
        """
        try:
            return self._forward(x, track_features)
        except RuntimeError as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc):
                raise  # the batch runner fails those images and goes on
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ComputeError(
                f"encoder {self.name} cannot run on a {x.shape[-1]} x {x.shape[-2]} input ({reason}); "
                "try another --size"
            ) from None

    def _forward(self, x: Tensor, track_features: bool) -> tuple[Tensor, Tensor]:
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.layer is None:
            features = self.forward_features(x)  # (B, C, H', W')
            if track_features:
                features = features.detach().requires_grad_()
            return features, self.forward_head(features)
        captured: list[Tensor] = []
        caller = threading.get_ident()

        def grab(_module: nn.Module, _inputs: object, output: Tensor) -> Tensor | None:
            if threading.get_ident() != caller:  # another lane's pass through the shared module: not ours
                return None
            grid = as_grid(output, x.shape[-2], x.shape[-1])  # NCHW, NHWC or tokens -> (B, C, H', W')
            if grid is None:
                raise UsageError(f"layer {self.layer!r} of encoder {self.name} gives no spatial map at this size")
            if not track_features:  # a copy of our own: an in-place activation after this layer cannot change it,
                captured.append(grid.cells.clone())  # and the network's own graph (its attention's) stays whole
                return None
            cells = grid.cells.detach().requires_grad_()
            captured.append(cells)
            # the rest of the network runs on the cells (so the logits can be differentiated by them), as a copy:
            # an in-place activation after this layer must neither change the captured map nor act on a leaf
            return grid.rebuild(cells).clone()

        handle = self.get_submodule(self.resolve_layer(self.layer)).register_forward_hook(grab)
        try:
            logits = self.forward_head(self.forward_features(x))
        finally:
            handle.remove()
        return captured[-1], logits

    def optimize(self) -> None:
        """Fold batch norms into convolutions and switch to channels-last: about 2x faster on CPU, same maps.

        Only for inference (the folded model has no batch norms left to train).
        """
        from attnviz.models.folding import fold_batch_norms

        # smooth noise, not zeros: a constant picture could hide a wrong fold (seeded: no global RNG touched)
        side = self.fixed_size or self.probe_sides[0]
        noise = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))  # (1, 3, side, side)
        probe = noise.to(next(self.parameters()).device)
        fold_batch_norms(self, probe, self.name)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._channels_last = True

    def class_vectors(self) -> Tensor | None:
        """(K, C) classifier rows when the logits are exactly `mean over cells of h` . row + bias, else None."""
        linear = self.classifier()
        if linear is None or self.layer is not None:
            return None
        return linear.weight

    def head_is_pool_linear(self) -> bool:
        """Check on random features that the head is global average pooling followed by `classifier()`."""
        linear = self.classifier()
        if linear is None:
            return False
        generator = torch.Generator().manual_seed(0)
        if linear.in_features != self.channels:  # something sits between the pooled map and the last layer
            return False
        features = torch.rand(2, linear.in_features, 3, 5, generator=generator) * 3  # (2, C, 3, 5)
        with torch.inference_mode():
            logits = self.forward_head(features)
            expected = linear(features.mean(dim=(2, 3)))
        return bool(logits.shape == expected.shape and torch.allclose(logits, expected, atol=1e-4, rtol=1e-4))

    def geometry(self) -> tuple[int, int]:
        """(channels, stride) of the feature map in use, measured with one small forward pass."""
        if self._geometry is None:
            probe = self.fixed_size or self.probe_sides[1]
            device = next(self.parameters()).device
            with torch.inference_mode():
                features, _ = self(torch.zeros(1, 3, probe, probe, device=device))
            self._geometry = (int(features.shape[1]), max(1, round(probe / features.shape[-1])))
        return self._geometry

    @property
    def channels(self) -> int:
        return self.geometry()[0]

    @property
    def stride(self) -> int:
        return self.geometry()[1]

    def spatial_layers(self, min_stride: float = DISCOVERY_STRIDE) -> list[str]:
        """Names of modules whose output is a grid of cells, in execution order, as `--layer` accepts them.

        Listed with cells of at least `min_stride` pixels; a layer named by the user may be finer.
        """
        probe = self.fixed_size or self.probe_sides[0]
        names = {module: name.removeprefix("model.") for name, module in self.named_modules() if name}
        seen: list[str] = []

        def note(module: nn.Module, _inputs: object, output: object) -> None:
            name = names.get(module)
            # a 1 x 1 output at the probe size is a global pool, not a map to attend over
            spatial = as_grid(output, probe, probe, min_stride) is not None
            if spatial and name and name not in seen:
                seen.append(name)

        handles = [module.register_forward_hook(note) for module in names]
        try:
            with torch.inference_mode():
                self.forward_head(self.forward_features(torch.zeros(1, 3, probe, probe)))
        finally:
            for handle in handles:
                handle.remove()
        return seen

    def resolve_layer(self, name: str) -> str:
        modules = dict(self.named_modules())
        for candidate in (name, f"model.{name}"):
            if candidate and candidate in modules:
                return candidate
        raise UsageError(f"encoder {self.name} has no layer {name!r}; {self.describe_layers()}")

    def describe_layers(self) -> str:
        layers = [n for n in self.spatial_layers() if n.count(".") <= 1]
        shown = ", ".join(layers[-12:])
        return f"spatial layers include: {shown} (default: the last)"

    def use_layer(self, name: str | None) -> None:
        if name == self.layer:
            return
        if name is not None and self.resolve_layer(name).removeprefix("model.") not in self.spatial_layers(1):
            raise UsageError(
                f"layer {name!r} of encoder {self.name} gives no spatial map (not a grid of cells); "
                + self.describe_layers()
            )
        self.layer = name
        self._geometry = None

    def input_size(self, width: int, height: int, size: int) -> tuple[int, int]:
        """Network input (w, h): shorter side near `size`, aspect ratio kept, both sides a multiple of the stride.

        Whole multiples of the stride make every grid cell cover the same square of the picture.
        """
        if self.fixed_size is not None:  # the model takes one size: the picture is resized to it, squashed
            return self.fixed_size, self.fixed_size
        s = self.stride
        short = max(s, round(size / s) * s)
        ratio = max(width, height) / max(1, min(width, height))
        limit = max(MAX_SIDE, 4 * size)
        if short * ratio > limit:  # a panorama or a 10000 x 10 strip: shrink both sides, keep the shape
            short = max(s, round(limit / ratio / s) * s)
        long = min(max(s, round(short * ratio / s) * s), max(s, limit // s * s))
        return (short, long) if width <= height else (long, short)

    def preprocess(self, image: Image.Image, size: int) -> Tensor:
        """RGB picture -> (3, h, w) float tensor, resized and normalised as the weights expect.

        Resized by torch's uint8 antialiased kernels, a port of Pillow's (within 2 grey levels of it) that is
        about 6x faster on a 1024 x 768 photo. A picture over 3 times the network's size is first box-reduced by
        Pillow, as `resize(reducing_gap=3)` does, so a huge photo never becomes a huge tensor.
        """
        w, h = self.input_size(image.width, image.height, size)
        factor = (max(1, int(image.width / w / _REDUCING_GAP)), max(1, int(image.height / h / _REDUCING_GAP)))
        if factor != (1, 1):
            image = image.reduce(factor)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
        pixels = pixels.contiguous(memory_format=torch.channels_last)  # no copy: numpy's (H, W, 3) already is
        resized = F.interpolate(pixels, size=(h, w), mode=self.resample, antialias=True)  # (1, 3, h, w) uint8
        resized = resized.contiguous(memory_format=torch.channels_last)[0]  # cheaper in uint8 than in float
        std = torch.tensor(self.std).reshape(3, 1, 1)  # (3, 1, 1)
        scale, shift = (255.0 * std).reciprocal(), torch.tensor(self.mean).reshape(3, 1, 1) / std  # (3, 1, 1) each
        # stays channels-last, the layout the fast encoder wants
        return resized.float().mul_(scale).sub_(shift)
