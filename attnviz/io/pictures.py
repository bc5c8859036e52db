"""Pictures handed to the Python API: a path, a Pillow image, a numpy array or a tensor, as RGB."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from torch import Tensor

from attnviz.errors import UsageError
from attnviz.io.images import load_image

Picture = str | os.PathLike[str] | Image.Image | np.ndarray | Tensor


def as_picture(image: Picture) -> Image.Image:
    """An RGB Pillow image from any of the forms `Explainer.explain` takes."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        return load_image(image).image
    if isinstance(image, Tensor):
        tensor = image.detach().cpu()
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
            raise UsageError(f"a tensor picture must be (3, H, W) or (1, H, W), got {tuple(image.shape)}")
        image = tensor.permute(1, 2, 0).numpy()  # (H, W, 3)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UsageError(f"a numpy picture must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise UsageError(f"a picture array must be uint8, or floats in [0, 1]; got {array.dtype}")
        array = (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
