from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from attnviz.errors import OutputError, UsageError
from attnviz.explainer import Explainer
from attnviz.options import Mode
from attnviz.render import figures as compare
from attnviz.render.figures import Panel, comparison_figure, save_figure
from attnviz.results import Prediction

from helpers import errors_on_threads

BAR_LABEL = "attention (median \u2192 max)"


def picture(width: int = 64, height: int = 48) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def blob(width: int = 64, height: int = 48, x: float = 0.5, y: float = 0.5) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    d2 = (xx / width - x) ** 2 + (yy / height - y) ** 2
    return np.exp(-d2 / 0.02).astype(np.float32)  # (H, W) in [0, 1]


def panels(count: int = 3) -> list[Panel]:
    modes = ["dot", "general", "concat", "dot", "general", "concat"]
    target = Prediction(281, "tabby, tabby cat", 0.1234)
    return [Panel(modes[i % 6], target, blob(x=0.2 + 0.1 * i)) for i in range(count)]


def image_axes(figure: Figure) -> list[Axes]:
    return [ax for ax in figure.axes if ax.images]


def texts(ax: Axes) -> str:
    return " ".join([ax.get_title(), *(t.get_text() for t in ax.texts)])


def colour_bar_axes(figure: Figure) -> list[Axes]:
    return [ax for ax in figure.axes if ax.get_xlabel() == BAR_LABEL]


def test_figure_has_the_input_one_axes_per_panel_and_one_colour_bar() -> None:
    figure = comparison_figure(picture(), panels(3))
    shown = image_axes(figure)
    assert len(shown) == 4
    assert len(colour_bar_axes(figure)) == 1
    assert len(figure.axes) == 5
    assert shown[0].get_title() == "input"
    assert all(not ax.axison for ax in shown)
    assert tuple(figure.get_size_inches()) == pytest.approx((12.0, figure.get_size_inches()[1]))


def test_titles_name_mode_label_and_probability() -> None:
    figure = comparison_figure(picture(), panels(3), title="photo")
    shown = image_axes(figure)
    assert shown[0].get_title() == "photo"
    for ax, mode in zip(shown[1:], ["dot", "general", "concat"], strict=True):
        assert mode in texts(ax)
        assert "tabby (p=0.123)" in texts(ax)
        assert "tabby cat" not in texts(ax)  # first synonym only


def test_mode_enum_is_drawn_by_its_value() -> None:
    figure = comparison_figure(picture(), [Panel(Mode.concat, Prediction(0, "cat", 0.5), blob())])
    assert "concat" in texts(image_axes(figure)[1])
    assert "Mode" not in texts(image_axes(figure)[1])


def test_overlay_axes_show_the_blended_map_and_the_input_the_photo() -> None:
    image = picture()
    figure = comparison_figure(image, panels(1), colormap="viridis", alpha=0.5)
    first, second = (ax.images[0].get_array() for ax in image_axes(figure))
    assert np.array_equal(np.asarray(first), np.asarray(image))
    assert not np.array_equal(np.asarray(second), np.asarray(image))


def test_colour_bar_uses_the_overlay_colormap_and_low_high_ticks() -> None:
    figure = comparison_figure(picture(), panels(2), colormap="magma")
    (bar,) = colour_bar_axes(figure)
    assert [t.get_text() for t in bar.get_xticklabels()] == ["low", "high"]
    assert list(bar.get_xticks()) == [0.0, 1.0]
    assert bar._colorbar.cmap.name == "magma"  # type: ignore[attr-defined]


def test_many_panels_wrap_into_rows_of_equal_panels() -> None:
    figure = comparison_figure(picture(), panels(5))  # 6 pictures, 4 columns -> 2 rows
    shown = image_axes(figure)
    boxes = [ax.get_position() for ax in shown]
    assert len({round(b.y0, 6) for b in boxes}) == 2
    assert len({(round(b.width, 6), round(b.height, 6)) for b in boxes}) == 1
    assert figure.get_size_inches()[0] == pytest.approx(12.0)
    two = comparison_figure(picture(), panels(3), columns=2)
    assert two.get_size_inches()[0] == pytest.approx(6.0)
    assert len({round(ax.get_position().y0, 6) for ax in image_axes(two)}) == 2


def test_panels_do_not_overlap_and_titles_stay_inside_the_figure() -> None:
    figure = comparison_figure(picture(), panels(5))
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    figure.draw(renderer)
    frame = figure.bbox
    boxes = []
    for ax in image_axes(figure):
        boxes.append(ax.get_window_extent(renderer))
        for text in [ax.title, *ax.texts]:
            extent = text.get_window_extent(renderer)
            assert frame.x0 <= extent.x0 and extent.x1 <= frame.x1 and extent.y1 <= frame.y1
            boxes.append(extent)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b) or a.x1 == b.x0 or b.x1 == a.x0


def test_long_labels_are_shortened() -> None:
    assert compare.short_label("dragonfly, darning needle, devil's darning needle") == "dragonfly"
    long = compare.short_label("a very long class name that would never fit one column")
    assert len(long) <= compare.LABEL_CHARS and long.endswith("\u2026")
    assert compare.format_prob(0.00004) == "4.0e-05"


def test_heatmap_of_another_size_is_refused() -> None:
    bad = [Panel("dot", Prediction(0, "cat", 0.5), np.zeros((48, 63), np.float32))]
    with pytest.raises(ValueError, match=r"panel 1 \(dot\): the heatmap is 63x48 \(w x h\) but the image is 64x48"):
        comparison_figure(picture(), bad)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one panel"):
        comparison_figure(picture(), [])
    with pytest.raises(ValueError, match="columns"):
        comparison_figure(picture(), panels(1), columns=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        comparison_figure(picture(), [Panel("dot", Prediction(0, "cat", 0.5), blob() * 3)])
    with pytest.raises(UsageError, match="colormap"):
        comparison_figure(picture(), panels(1), colormap="no-such-map")
    with pytest.raises(UsageError, match="alpha"):
        comparison_figure(picture(), panels(1), alpha=1.5)


def test_large_photos_are_drawn_smaller() -> None:
    image = picture(2400, 1600)
    figure = comparison_figure(image, [Panel("dot", Prediction(0, "cat", 0.5), blob(2400, 1600))])
    for ax in image_axes(figure):
        assert max(np.asarray(ax.images[0].get_array()).shape[:2]) == compare.MAX_PIXELS_SIDE


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_save_figure_writes_each_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"figure{suffix}"
    save_figure(comparison_figure(picture(), panels(2)), path)
    data = path.read_bytes()
    if suffix == ".png":
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 1000  # 200 dpi
    elif suffix == ".pdf":
        assert data.startswith(b"%PDF")
    else:
        assert b"<svg" in data
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_unknown_extension_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"cannot tell the figure format from '.*x\.gif'; use \.png, \.pdf or \.svg"):
        save_figure(comparison_figure(picture(), panels(1)), tmp_path / "x.gif")
    assert not list(tmp_path.iterdir())


def test_existing_file_is_kept_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "figure.png"
    path.write_bytes(b"keep me")
    figure = comparison_figure(picture(), panels(1))
    with pytest.raises(OutputError, match="already exists"):
        save_figure(figure, path)
    assert path.read_bytes() == b"keep me"
    save_figure(figure, path, overwrite=True)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_figures_can_be_drawn_on_several_threads(tmp_path: Path) -> None:
    def work(i: int) -> None:
        save_figure(comparison_figure(picture(), panels(2)), tmp_path / f"f{i}.png")

    errors = errors_on_threads(work, 4)
    assert not errors
    assert len(list(tmp_path.glob("f*.png"))) == 4


def test_explanations_of_the_tiny_encoder_make_a_figure(tmp_path: Path) -> None:
    image = picture(80, 56)
    built = []
    for mode in ("dot", "general", "concat"):
        explanation = Explainer("tiny_test", mode=mode, size=56).explain(image)
        built.append(Panel(mode, explanation.target, explanation.heatmap))
    figure = comparison_figure(image, built)
    assert len(image_axes(figure)) == 4
    for ax, panel in zip(image_axes(figure)[1:], built, strict=True):
        assert panel.target is not None and panel.target.label in texts(ax)
    save_figure(figure, tmp_path / "tiny.pdf")
    assert (tmp_path / "tiny.pdf").read_bytes().startswith(b"%PDF")


def test_tall_photos_get_narrower_columns_but_room_for_their_titles() -> None:
    tall = picture(40, 200)
    figure = comparison_figure(tall, [Panel("dot", Prediction(0, "cat", 0.5), blob(40, 200))])
    width, height = figure.get_size_inches()
    assert width < 2 * 3.0 * 0.8  # not two 3-inch columns of white around thin pictures
    assert height < 6.0  # capped at MAX_ASPECT times the column
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    titles = [ax.title.get_window_extent(renderer) for ax in image_axes(figure)]
    assert not titles[0].overlaps(titles[1])
