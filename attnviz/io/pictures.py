"""Pictures handed to the Python API: a path, a Pillow image, a numpy array or a tensor, as RGB."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image
from torch import Tensor

from attnviz.errors import UsageError
from attnviz.io.images import load_image

Picture = str | os.PathLike[str] | Image.Image | np.ndarray | Tensor
#: A batch: a list of pictures, a (B, 3, H, W) or (B, 1, H, W) tensor, or a (B, H, W, 3) numpy array.
Pictures = Sequence[Picture] | np.ndarray | Tensor
#: A class to explain, by index or name; None: the picture's top-1 class.
Target = str | int | np.integer | Tensor | None  # a 0-d tensor or array: a class index
#: One target for every picture of a batch, or one each (a list, or a (B,) tensor or array of indices).
Targets = Target | Sequence[Target] | np.ndarray | Tensor


#: How far outside [0, 1] a float picture may stray before it is refused: a bicubic resize overshoots by up to 0.15
#: at hard edges, while 0-255 floats reach far above and an ImageNet-normalised tensor goes down to -2.1.
FLOAT_SLACK = 0.5


def as_picture(image: Picture) -> Image.Image:
    """An RGB Pillow image from any of the forms `Explainer.explain` takes."""
    if isinstance(image, Image.Image):  # an RGB one as it is: an explanation keeps a reference, not a copy
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, (list, tuple)):
        raise UsageError(f"a list of {len(image)} pictures: explain_batch takes a batch (explain takes one picture)")
    if isinstance(image, (str, os.PathLike)):
        return load_image(image).image
    if isinstance(image, Tensor):
        tensor = image.detach().cpu()
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() == 4:
            raise UsageError(
                f"a tensor of {tensor.shape[0]} pictures {tuple(image.shape)}: explain_batch takes a batch "
                "(explain takes one picture)"
            )
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
            raise UsageError(f"a tensor picture must be (3, H, W) or (1, H, W), got {tuple(image.shape)}")
        image = tensor.permute(1, 2, 0).numpy()  # (H, W, 3)
    array = np.asarray(image)  # an array-like too (JAX, dask, `__array__`)
    if array.dtype == object or array.ndim == 0:
        raise UsageError(
            f"a picture is a path, a Pillow image, a numpy array or a torch tensor, not {type(image).__name__}"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UsageError(f"a numpy picture must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.size == 0:
        raise UsageError(f"a picture array of shape {array.shape} holds no pixels")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise UsageError(f"a picture array must be uint8, or floats in [0, 1]; got {array.dtype}")
        low, high = float(array.min()), float(array.max())  # NaN if any is, and inf if any is
        if not (np.isfinite(low) and np.isfinite(high)):  # a caller's bug upstream: drawn black, it looks like a photo
            raise UsageError(f"a picture array of {array.dtype} holds NaN or infinite values")
        if low < -FLOAT_SLACK or high > 1 + FLOAT_SLACK:  # 0-255 floats, or a normalised tensor: clipped, nonsense
            raise UsageError(
                f"a float picture must hold values in [0, 1], but this one goes from {low:.3g} to {high:.3g}: "
                "divide 0-255 values by 255, or undo a normalisation (attnviz normalises as its encoder expects)"
            )
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def as_pictures(images: Pictures) -> list[Image.Image]:
    """RGB Pillow images, in order, from a batch in any of the forms `Explainer.explain_batch` takes."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        raise UsageError("explain_batch takes a list of pictures or a 4-D tensor or array; explain takes one picture")
    if isinstance(images, (Tensor, np.ndarray)):
        if images.ndim != 4:
            raise UsageError(
                f"a batch must be a (B, 3, H, W) tensor or a (B, H, W, 3) array, got {tuple(images.shape)}; "
                "explain takes one picture"
            )
        return [as_picture(images[i]) for i in range(images.shape[0])]
    if not isinstance(images, Sequence):
        raise UsageError(f"explain_batch takes a list of pictures or a 4-D tensor, not {type(images).__name__}")
    return [as_picture(image) for image in images]


def source_path(image: Picture) -> str | None:
    """The file a picture was read from, so that nothing saved from its explanation replaces it."""
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
