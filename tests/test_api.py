"""The Python API as researchers use it: batches with per-image targets, results that show, save and hand back
tensors."""

from __future__ import annotations

import dataclasses
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnviz.errors import OutputError, UsageError
from attnviz.explainer import Explainer
from attnviz.io.pictures import Picture, Target
from attnviz.models.base import Encoder
from attnviz.options import ATTENTION_MODES, SCORER_MODES, Mode, Query
from attnviz.results import DISPLAY_SIDE, Explanation

from helpers import SAMPLES, photo


def _batch(count: int = 4, height: int = 72, width: int = 96) -> torch.Tensor:
    return torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(1))


def _same(batch: list[Explanation], alone: list[Explanation]) -> None:
    assert len(batch) == len(alone)
    for a, b in zip(batch, alone, strict=True):
        assert a.grid == b.grid and a.input_size == b.input_size and a.classify_size == b.classify_size
        for p, q in zip([a.target, *a.topk], [b.target, *b.topk], strict=True):
            assert p is q is None or (p and q and p.index == q.index and p.prob == pytest.approx(q.prob, abs=1e-6))
        np.testing.assert_allclose(a.weights, b.weights, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-4, rtol=0)


@pytest.mark.parametrize("query", [Query.classifier, Query.gradient])
@pytest.mark.parametrize("mode", SCORER_MODES)
def test_a_batch_tensor_with_a_target_each_equals_explaining_each_picture_alone(mode: Mode, query: Query) -> None:
    explainer = Explainer("tiny_test", mode, 64, query=query, device="cpu")
    x = _batch()
    targets: list[Target] = [0, "dog", None, 3]
    batch = explainer.explain_batch(x, target=targets)
    _same(batch, [explainer.explain(x[i], t) for i, t in enumerate(targets)])
    assert [r.target.index for r in batch[:2]] + [batch[3].target.index] == [0, 1, 3]  # type: ignore[union-attr]
    assert batch[2].target == batch[2].topk[0]  # None: the picture's own top class


def test_a_real_encoder_batched_in_two_passes_equals_explaining_each_alone(lite0: Encoder) -> None:
    explainer = Explainer(lite0, "concat", 320, device="cpu")  # recognised at 224, mapped at 320: two passes
    names = ("chelsea.png", "coffee.png", "astronaut.png")
    x = torch.stack([torch.from_numpy(np.array(photo(n).resize((320, 240)))).permute(2, 0, 1) for n in names])
    targets = ["tabby", "espresso", None]
    batch = explainer.explain_batch(x, target=targets)
    _same(batch, [explainer.explain(x[i], t) for i, t in enumerate(targets)])
    assert batch[0].classify_size and batch[0].classify_size[1] == 224 and batch[0].input_size[1] == 320


@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_transformer_modes_batch_like_single_pictures(mode: Mode) -> None:
    from attnviz.models.timm_models import create_timm_model, timm_encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_timm_model("vit_tiny_patch16_224", num_classes=5, depth=2)
    encoder = timm_encoder("timm:vit_tiny_patch16_224", model, [f"c{i}" for i in range(5)])
    explainer = Explainer(encoder, mode, 96, classify_size=96, device="cpu")
    x = _batch(3, 96, 128)
    targets = [None, None, None] if mode in (Mode.cls, Mode.rollout) else [1, None, 4]
    _same(explainer.explain_batch(x, targets), [explainer.explain(x[i], t) for i, t in enumerate(targets)])


def test_a_list_of_pictures_of_any_size_and_form_comes_back_in_order(samples: Path) -> None:
    explainer = Explainer("tiny_test", "dot", 64, device="cpu")
    chelsea = photo("chelsea.png")
    pictures: list[Picture] = [
        samples / "coffee.png",
        chelsea,
        np.asarray(photo("rocket.jpg")),
        str(samples / "coffee.png"),
    ]
    batch = explainer.explain_batch(pictures, target="lion")
    _same(batch, [explainer.explain(p, "lion") for p in pictures])
    assert [r.heatmap.shape for r in batch] == [(400, 600), (300, 451), (427, 640), (400, 600)]
    assert batch[1].picture is chelsea  # a reference to the caller's picture, not a copy
    assert batch[0].source == str(samples / "coffee.png") and batch[1].source is None
    assert all(r.target is not None and r.target.label == "lion" for r in batch)
    small = explainer.explain_batch(pictures, target=torch.tensor([4, 4, 4, 4]), batch_size=1)
    _same(small, batch)
    assert explainer.explain_batch([]) == []


def test_bad_batches_and_targets_are_one_line_usage_errors() -> None:
    explainer = Explainer("tiny_test", "dot", 64, device="cpu")
    x = _batch(2)
    cases = [
        (lambda: explainer.explain(x), "explain_batch takes a batch"),
        (
            lambda: explainer.explain([x[0], x[1]]),  # type: ignore[arg-type]
            "a list of 2 pictures: explain_batch",
        ),
        (lambda: explainer.explain_batch(x[0]), "a batch must be a (B, 3, H, W) tensor"),
        (lambda: explainer.explain_batch(str(SAMPLES / "coffee.png")), "explain takes one picture"),
        (lambda: explainer.explain_batch(x, target=[0, 1, 2]), "3 targets for 2 pictures"),
        (
            lambda: explainer.explain_batch(x, target=[0.5, 1]),  # type: ignore[list-item]
            "a target is a class index or name",
        ),
        (lambda: explainer.explain_batch(x, target=torch.zeros(2, 2, dtype=torch.long)), "(B,) class indices"),
        (lambda: explainer.explain_batch(x, target=[0, "zebra"]), "no class matches 'zebra'"),
        (lambda: explainer.explain_batch(x, target=7), "target 7 is out of range"),
        (lambda: explainer.explain_batch(x, batch_size=0), "batch_size must be a whole number of at least 1"),
    ]
    for call, message in cases:
        with pytest.raises(UsageError) as caught:
            call()
        assert message in str(caught.value) and "\n" not in str(caught.value), (message, caught.value)


def test_to_tensor_is_the_map_where_the_network_ran_without_a_copy() -> None:
    explainer = Explainer("tiny_test", "concat", 64, device="cpu")
    result = explainer.explain(_batch(1)[0])
    tensor = result.to_tensor()
    assert tensor.shape == result.grid and tensor.device == explainer.device
    assert tensor.data_ptr() == result.weights.ctypes.data  # on the CPU the very memory of `weights`
    assert torch.isclose(tensor.sum(), torch.tensor(1.0), atol=1e-5)
    drawn = dataclasses.replace(result, device_weights=None)  # built by hand: from the numpy weights, no copy
    assert np.shares_memory(drawn.to_tensor().numpy(), result.weights)


def test_the_repr_is_one_short_line_with_class_probability_grid_and_mode() -> None:
    result = Explainer("tiny_test", "general", 64, device="cpu").explain(photo("coffee.png"), target="hot dog")
    text = repr(result)
    assert text.startswith("<Explanation 'hot dog' (#2) p=") and text.endswith(", grid 8x12, mode general>")
    assert len(text) < 80 and "\n" not in text and "array" not in text
    assert result.mode == "general"
    names = [f.name for f in dataclasses.fields(result)]
    assert names[:7] == ["input_size", "grid", "scores", "weights", "target", "topk", "classify_size"]
    assert {f.name for f in dataclasses.fields(result) if not f.compare} == {"device_weights", "picture", "source"}


def test_an_explanation_shows_as_its_overlay_in_ipython() -> None:
    from IPython.core.formatters import DisplayFormatter

    explainer = Explainer("tiny_test", "concat", 64, device="cpu")
    image = photo("coffee.png")
    result = explainer.explain(image)
    shown, _ = DisplayFormatter().format(result)
    assert shown["text/plain"] == repr(result)
    with Image.open(io.BytesIO(shown["image/png"])) as png:
        assert png.size == image.size
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), result.overlay())
    big = explainer.explain(image.resize((2400, 1600)))
    with Image.open(io.BytesIO(DisplayFormatter().format(big)[0]["image/png"])) as png:
        assert png.width == DISPLAY_SIDE and abs(png.height - DISPLAY_SIDE * 2 / 3) < 1  # a big photo, shown smaller
    bare = explainer.draw(explainer.explain_classes(image)[0], image.width, image.height)  # no picture: repr alone
    assert "image/png" not in DisplayFormatter().format(bare)[0]
    with pytest.raises(UsageError, match="keeps no picture"):
        bare.overlay()
    with pytest.raises(UsageError, match="the picture is 64x64 but the map was drawn for 600x400"):
        result.overlay(Image.new("RGB", (64, 64)))


def test_save_writes_the_clis_formats_whole_and_never_over_a_file_unasked(tmp_path: Path) -> None:
    explainer = Explainer("tiny_test", "concat", 64, device="cpu")
    result = explainer.explain(SAMPLES / "coffee.png")
    for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.webp", "WEBP"), ("d/e.JPEG", "JPEG")):
        assert result.save(tmp_path / name) == tmp_path / name
        with Image.open(tmp_path / name) as saved:
            assert saved.format == fmt and saved.size == (600, 400)
    with Image.open(tmp_path / "a.png") as saved:
        np.testing.assert_array_equal(np.asarray(saved), result.overlay())
    with pytest.raises(UsageError, match="cannot tell the output format from"):
        result.save(tmp_path / "f.gif")
    with pytest.raises(UsageError, match="--alpha must be between 0 and 1"):
        result.save(tmp_path / "g.png", alpha=2)
    before = (tmp_path / "a.png").read_bytes()
    with pytest.raises(OutputError, match=r"already exists \(use overwrite=True to replace it\)"):
        result.save(tmp_path / "a.png", colormap="viridis")
    assert (tmp_path / "a.png").read_bytes() == before
    result.save(tmp_path / "a.png", colormap="viridis", overwrite=True)
    assert (tmp_path / "a.png").read_bytes() != before
    result.save(tmp_path / "captioned.png", annotate=True)
    with Image.open(tmp_path / "captioned.png") as captioned:
        assert captioned.width == 600 and captioned.height > 400
        np.testing.assert_array_equal(np.asarray(captioned)[:400], result.overlay())
    copy = tmp_path / "coffee.png"
    copy.write_bytes((SAMPLES / "coffee.png").read_bytes())
    own = explainer.explain(copy)
    with pytest.raises(OutputError, match="refusing to write over the input image"):
        own.save(copy, overwrite=True)
    assert sorted(p.name for p in tmp_path.rglob(".attnviz-*")) == []  # no temporary file left behind


def test_a_failed_save_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = Explainer("tiny_test", "concat", 64, device="cpu").explain(photo("coffee.png"))

    def broken(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "link", broken)  # fails after the bytes are written, before the file is in place
    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OutputError, match="No space left on device"):
        result.save(tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    wide = Explainer("tiny_test", "concat", 64, device="cpu").explain(Image.new("RGB", (17000, 20)))
    with pytest.raises(OutputError, match="cannot encode as WEBP"):
        wide.save(tmp_path / "wide.webp")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"mode": "nope"}, "mode='nope' is not one of: dot, general, concat"),
        ({"query": "x"}, "query='x' is not one of: auto, classifier, gradient"),
        ({"backend": "tpu"}, "backend='tpu' is not one of: auto, torch, onnxruntime"),
        ({"topk": 0}, "topk=0: at least 1"),
    ],
)
def test_a_bad_choice_is_a_usage_error_not_a_bare_value_error(keywords: dict[str, object], message: str) -> None:
    """The README: anything but an AttnvizError is a bug. Enum's own ValueError was what `mode="nope"` raised."""
    with pytest.raises(UsageError, match=re.escape(message)):
        Explainer("tiny_test", size=64, device="cpu", **keywords)  # type: ignore[arg-type]


def test_help_of_the_package_shows_its_api() -> None:
    """`help(attnviz)` listed only `__getattr__`: the lazy names were invisible to pydoc."""
    import pydoc

    import attnviz

    text = pydoc.render_doc(attnviz, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    assert "explain(" in text and "class Explainer" in text and "class Explanation" in text


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_picture_of_nan_or_inf_is_an_error_not_a_black_photo(bad: float) -> None:
    """It was drawn as black and explained: a "nematode" with a finite map, for a bug in the caller's pipeline."""
    picture = torch.rand(3, 64, 64)
    picture[1, 5, 7] = bad
    explainer = Explainer("tiny_test", "dot", 64, device="cpu")
    with pytest.raises(UsageError, match="holds NaN or infinite values"):
        explainer.explain(picture)


@pytest.mark.parametrize(
    ("picture", "message"),
    [
        (np.full((64, 64, 3), 200.0, np.float32), "must hold values in [0, 1], but this one goes from 200 to 200"),
        (torch.full((3, 64, 64), -1.5), "goes from -1.5 to -1.5: divide 0-255 values by 255, or undo a normal"),
        (np.zeros((0, 0, 3), np.uint8), "of shape (0, 0, 3) holds no pixels"),
        (None, "a picture is a path, a Pillow image, a numpy array or a torch tensor, not NoneType"),
        (b"\x89PNG", "not bytes"),
    ],
)
def test_a_picture_that_cannot_be_meant_is_refused_with_why(picture: object, message: str) -> None:
    """0-255 floats were clipped to white and explained ("nematode"), a normalised tensor clipped likewise; an empty
    array reached torch; None was "a numpy picture must be (H, W), ..., got ()"."""
    explainer = Explainer("tiny_test", "dot", 64, device="cpu")
    with pytest.raises(UsageError, match=re.escape(message)):
        explainer.explain(picture)  # type: ignore[arg-type]


def test_library_values_of_the_wrong_kind_are_usage_errors() -> None:
    explainer = Explainer("tiny_test", "dot", 64, device="cpu")
    with pytest.raises(UsageError, match="interpolation='cubicx' is not one of: nearest, bilinear, bicubic"):
        explainer.explain(torch.rand(3, 64, 64), interpolation="cubicx")
    with pytest.raises(UsageError, match="size='448': a whole number"):
        Explainer("tiny_test", size="448")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="encoder must be a name, an Encoder or a torch module, not int"):
        Explainer(5)  # type: ignore[arg-type]


def test_a_0d_tensor_target_is_a_class_index_and_an_array_picture_draws_an_overlay() -> None:
    """`labels[i]` of a tensor of labels was refused as `tensor(281)`; `overlay(array)` raised AttributeError."""
    explainer = Explainer("tiny_test", "dot", 64, device="cpu")
    picture = np.asarray(photo("chelsea.png").resize((80, 64)))  # (64, 80, 3) uint8
    explained = explainer.explain(picture, target=torch.tensor(2))
    assert explained.target is not None and explained.target.index == 2
    assert explained.overlay(picture).shape == (64, 80, 3)


def test_pictures_a_user_would_pass_are_still_taken() -> None:
    """A bicubic resize overshoots [0, 1] (-0.15 to 1.08 at hard edges); JAX, dask and the like give `__array__`;
    numpy integers are whole numbers."""

    class ArrayLike:
        def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
            return np.full((64, 64, 3), 120, np.uint8)

    explainer = Explainer("tiny_test", "dot", np.int64(64), device="cpu", topk=np.int64(2))  # type: ignore[arg-type]
    overshoot = torch.rand(3, 64, 64) * 1.2 - 0.1  # (3, 64, 64) in [-0.1, 1.1]
    assert explainer.explain(overshoot).heatmap.shape == (64, 64)
    assert explainer.explain(ArrayLike()).heatmap.shape == (64, 64)  # type: ignore[arg-type]
