"""`attnviz compare`, `attnviz encoders` and `attnviz labels` through the entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from attnviz.cli.app import main

SAMPLE = Path(__file__).resolve().parent.parent / "sample_images" / "chelsea.png"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_compare_draws_every_mode_with_labels(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["compare", str(SAMPLE), "--size", "224"]) == 0
    assert "wrote chelsea.compare.png" in capsys.readouterr().err
    with Image.open("chelsea.compare.png") as im:
        assert im.format == "PNG" and im.width > 1500


def test_compare_pdf_svg_topk_and_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["compare", str(SAMPLE), "-o", "f.pdf", "-m", "dot", "-k", "2", "--size", "224"]) == 0
    assert Path("f.pdf").read_bytes().startswith(b"%PDF")
    assert main(["compare", str(SAMPLE), "-o", "f.svg", "-m", "dot", "-t", "tabby", "--size", "224"]) == 0
    assert b"<svg" in Path("f.svg").read_bytes()[:400]
    capsys.readouterr()
    assert main(["compare", str(SAMPLE), "-o", "f.pdf", "-m", "dot"]) == 1
    assert "f.pdf: already exists" in capsys.readouterr().err
    assert main(["compare", str(SAMPLE), "-o", "f.gif"]) == 2
    assert "cannot tell the figure format" in capsys.readouterr().err


def test_compare_figure_has_a_panel_per_mode_and_class() -> None:
    import attnviz.render.figures as figures
    from attnviz.commands.compare import CompareOptions, compare

    seen = {}
    original = figures.comparison_figure

    def spy(image, panels, **kwargs):  # type: ignore[no-untyped-def]
        seen["panels"] = [(p.mode, p.target.index) for p in panels]
        return original(image, panels, **kwargs)

    figures.comparison_figure = spy  # type: ignore[assignment]
    try:
        compare(str(SAMPLE), "x.png", CompareOptions(topk=2, size=224))
    finally:
        figures.comparison_figure = original  # type: ignore[assignment]
    modes = [m for m, _ in seen["panels"]]
    assert modes == ["dot", "dot", "concat", "concat"]  # general draws what concat does without a fitted head
    assert seen["panels"][0][1] == 285


def test_encoders_lists_channels_stride_and_weights(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["encoders"]) == 0
    out = capsys.readouterr().out
    for name in (
        "efficientnet_lite0",
        "resnet18",
        "resnet50",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "vgg16",
        "timm:NAME",
    ):
        assert name in out
    lite = next(line for line in out.splitlines() if line.startswith("efficientnet_lite0"))
    assert lite.split()[1:4] == ["1280", "32", "embedded"]
    resnet50 = next(line for line in out.splitlines() if line.startswith("resnet50"))
    assert resnet50.split()[1:3] == ["2048", "32"]


def test_labels_lists_and_searches(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["labels"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1000
    assert main(["labels", "ESPRESSO"]) == 0
    assert capsys.readouterr().out.splitlines() == ["550\tespresso maker", "967\tespresso"]
    assert main(["labels", "no such thing"]) == 1
