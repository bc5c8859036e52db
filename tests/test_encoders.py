# mypy: disable-error-code="union-attr,index,operator"
# (these tests reach into nn.Module attributes, which torch types as `Tensor | Module`)
from __future__ import annotations

import pytest
import torch

from attnviz.errors import UsageError
from attnviz.models.base import Encoder
from attnviz.models.embedded import lite0_key
from attnviz.models.registry import create_encoder, encoder_names

from helpers import photo


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("_conv_stem.weight", "conv_stem.weight"),
        ("_bn0.running_mean", "bn1.running_mean"),
        ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
        ("_blocks.0._project_conv.weight", "blocks.0.0.conv_pw.weight"),
        ("_blocks.0._bn2.bias", "blocks.0.0.bn2.bias"),
        ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
        ("_blocks.2._bn0.weight", "blocks.1.1.bn1.weight"),
        ("_blocks.5._project_conv.weight", "blocks.3.0.conv_pwl.weight"),
        ("_blocks.15._bn2.weight", "blocks.6.0.bn3.weight"),
        ("_conv_head.weight", "conv_head.weight"),
        ("_bn1.weight", "bn2.weight"),
        ("_fc.bias", "classifier.bias"),
    ],
)
def test_lite0_key_renaming(key: str, expected: str) -> None:
    assert lite0_key(key) == expected


def test_registry_lists_and_refuses_unknown_names() -> None:
    assert "efficientnet_lite0" in encoder_names()
    with pytest.raises(UsageError, match=r"unknown encoder 'resnet9000'; choose from: .*efficientnet_lite0"):
        create_encoder("resnet9000")


@pytest.mark.parametrize(
    ("size", "width", "height", "expected"),
    [
        (448, 1024, 768, (608, 448)),
        (448, 768, 1024, (448, 608)),
        (224, 500, 500, (224, 224)),
        (448, 10, 4000, (32, 4096)),
        (448, 10000, 10, (4096, 32)),
        (448, 1, 1, (448, 448)),
        (448, 4000, 1000, (1792, 448)),
    ],
)
def test_input_size_keeps_aspect_on_stride_multiples(
    size: int, width: int, height: int, expected: tuple[int, int]
) -> None:
    tiny = create_encoder("tiny_test")
    tiny._geometry = (16, 32)
    assert tiny.input_size(width, height, size) == expected


def test_default_size_gives_14_cells_on_the_short_side_of_a_4_3_photo(lite0: Encoder) -> None:
    from attnviz.options import DEFAULT_SIZE

    w, h = lite0.input_size(1024, 768, DEFAULT_SIZE)
    assert h // lite0.stride >= 14 and w // lite0.stride >= 14


@pytest.mark.parametrize(
    ("name", "index", "label"), [("chelsea.png", 285, "Egyptian cat"), ("coffee.png", 967, "espresso")]
)
def test_real_encoder_recognises_bundled_photos(lite0: Encoder, name: str, index: int, label: str) -> None:
    for size in (224, 448):
        features, logits = lite0(lite0.preprocess(photo(name), size)[None])
        assert int(logits.argmax()) == index and lite0.labels[index] == label
        assert features.shape[1] == 1280 and features.shape[2] == size // 32


def test_real_encoder_head_is_pool_then_class_vectors(lite0: Encoder) -> None:
    features, logits = lite0(lite0.preprocess(photo("chelsea.png"), 224)[None])
    pooled = features.mean(dim=(2, 3))  # (1, C)
    bias = lite0.model.get_classifier().bias  # type: ignore[operator]
    assert torch.allclose(pooled @ lite0.class_vectors().T + bias, logits, atol=1e-4)


@pytest.mark.parametrize("resample", ["bicubic", "bilinear"])
def test_preprocess_matches_pillow_resizing_and_is_channels_last(resample: str) -> None:
    import numpy as np
    from PIL import Image

    encoder = create_encoder("tiny_test")  # mean 0.5, std 0.5: x = 2 * pixel / 255 - 1
    encoder.resample = resample
    picture = photo("coffee.png")
    x = encoder.preprocess(picture, 224)  # (3, h, w), under 3x smaller: no box reduction first
    w, h = encoder.input_size(picture.width, picture.height, 224)
    method = Image.Resampling.BICUBIC if resample == "bicubic" else Image.Resampling.BILINEAR
    pillow = np.asarray(picture.resize((w, h), method), np.float32) / 127.5 - 1  # (h, w, 3)
    assert x.shape == (3, h, w) and x.stride()[0] == 1  # channels-last, as the fast encoder wants
    assert float((x.permute(1, 2, 0) - torch.from_numpy(pillow)).abs().max()) <= 2.5 / 127.5  # within 2 grey levels


def test_preprocess_box_reduces_a_huge_picture_first() -> None:
    from PIL import Image

    encoder = create_encoder("tiny_test")
    huge = Image.new("RGB", (4096, 3072), (255, 0, 0))
    x = encoder.preprocess(huge, 64)
    assert x.shape == (3, *reversed(encoder.input_size(4096, 3072, 64)))
    assert torch.allclose(x[:, 2:-2, 2:-2], torch.tensor([1.0, -1.0, -1.0]).reshape(3, 1, 1), atol=1e-6)
