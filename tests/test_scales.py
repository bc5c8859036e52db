"""Recognise at the trained scale, draw at the fine one; and the single-photo benchmark that measures it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz.explainer import Explainer
from attnviz.quality.singles import count_regions, cut_out, load_singles, read_mask, reference_class

from helpers import run


def test_classes_come_from_the_trained_scale_and_the_map_from_the_fine_one(lite0, samples: Path) -> None:
    image = Image.open(samples / "coffee.png").convert("RGB")
    default = Explainer(lite0, "dot", 448).explain(image)
    trained = Explainer(lite0, "dot", 224, classify_size=224).explain(image)
    fine = Explainer(lite0, "dot", 448, classify_size=448).explain(image)
    assert default.classify_size == (320, 224) and default.input_size == (672, 448)
    assert [p.index for p in default.topk] == [p.index for p in trained.topk]
    assert default.target is not None and trained.target is not None and fine.target is not None
    assert default.target.prob == pytest.approx(trained.target.prob, rel=1e-4)
    assert default.target.prob > 5 * fine.target.prob  # the 448 px pass is unsure of its espresso
    np.testing.assert_allclose(default.weights, fine.weights, atol=1e-6)  # same class, same fine map
    assert fine.classify_size is None  # one pass


def test_json_reports_both_network_inputs(capsysbinary, samples: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsysbinary, "run", samples / "coffee.png", "--json", "-m", "dot")
    assert code == 0, err
    record = json.loads(out)
    assert record["size"] == [672, 448] and record["classify_size"] == [320, 224]
    assert record["target"]["label"] == "espresso" and record["target"]["prob"] > 0.5
    code, out, err = run(
        capsysbinary, "run", samples / "coffee.png", "--json", "-m", "dot", "--classify-size", "448", "--overwrite"
    )
    record = json.loads(out)
    assert record["classify_size"] == record["size"] == [672, 448] and record["target"]["prob"] < 0.1


def test_batches_mix_only_pictures_whose_two_passes_agree_in_shape(capsysbinary, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (96, 64)), ("b.png", (96, 64)), ("c.png", (64, 96)), ("d.png", (100, 64))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(name)
    args = ["run", "a.png", "b.png", "c.png", "d.png", "-e", "tiny_test", "-s", "64", "--batch-size", "4", "--json"]
    code, out, err = run(capsysbinary, *args, "-o", "batched")
    assert code == 0, err
    code, single, err = run(capsysbinary, *args[:-3], "--batch-size", "1", "--json", "-o", "single")
    batched_targets = [json.loads(line)["target"] for line in out.splitlines()]
    single_targets = [json.loads(line)["target"] for line in single.splitlines()]
    assert [t["index"] for t in batched_targets] == [t["index"] for t in single_targets]
    for b, s in zip(batched_targets, single_targets, strict=True):
        assert b["prob"] == pytest.approx(s["prob"], abs=1e-5)


# -- the single-photo benchmark ------------------------------------------------------------------------------


def composite(samples: Path, folder: Path, alpha: bool) -> None:
    """The espresso photo, shrunk, pasted on a plain grey-green gradient: a masked single object."""
    cup = Image.open(samples / "coffee.png").convert("RGB").resize((420, 280))
    ramp = np.linspace(90, 170, 640, dtype=np.float32)[None, :, None] * np.array([0.9, 1.0, 0.85], np.float32)
    background = Image.fromarray(np.broadcast_to(ramp, (426, 640, 3)).astype(np.uint8))
    background.paste(cup, (200, 120))
    mask = np.zeros((426, 640), np.uint8)
    mask[120:400, 200:620] = 255
    if alpha:
        rgba = background.convert("RGBA")
        rgba.putalpha(Image.fromarray(mask))
        rgba.save(folder / "cup.png")
    else:
        background.save(folder / "cup.jpg", quality=92)
        Image.fromarray(mask).save(folder / "cup.mask.png")


def test_masks_come_from_mask_files_or_alpha(samples: Path, tmp_path: Path) -> None:
    composite(samples, tmp_path, alpha=False)
    mask = read_mask(str(tmp_path / "cup.jpg"), (640, 426))
    assert mask is not None and mask.sum() == 420 * 280 and mask[120, 200] and not mask[119, 200]
    (tmp_path / "cup.mask.png").unlink()
    assert read_mask(str(tmp_path / "cup.jpg"), (640, 426)) is None
    alpha = tmp_path / "alpha"
    alpha.mkdir()
    composite(samples, alpha, alpha=True)
    mask = read_mask(str(alpha / "cup.png"), (640, 426))
    assert mask is not None and mask.sum() == 420 * 280


def test_the_reference_class_is_the_object_alone(lite0, samples: Path, tmp_path: Path) -> None:
    composite(samples, tmp_path, alpha=False)
    image = Image.open(tmp_path / "cup.jpg").convert("RGB")
    mask = read_mask(str(tmp_path / "cup.jpg"), image.size)
    assert mask is not None
    alone = np.asarray(cut_out(image, mask, 224))
    assert alone.shape == (224, 224, 3) and (alone[:8] == 255).all()  # over white, with a margin
    index, prob = reference_class(lite0, image, mask)
    assert lite0.labels[index] == "espresso" and prob > 0.3
    singles, masked = load_singles(str(tmp_path), lite0, min_prob=0.3)
    assert masked == 1 and [s.reference for s in singles] == [index]
    assert load_singles(str(tmp_path), lite0, min_prob=0.999)[0] == []


def test_regions_count_connected_areas_above_half_the_peak() -> None:
    heat = np.zeros((200, 300), np.float32)
    assert count_regions(heat) == 0
    heat[20:60, 20:60] = 1.0
    assert count_regions(heat) == 1
    heat[120:180, 200:280] = 0.6
    heat[100:110, 100:110] = 0.4  # under half the peak: not a region
    assert count_regions(heat) == 2


def test_eval_singles_rates_every_row(capsysbinary, samples: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    composite(samples, tmp_path, alpha=False)
    code, out, err = run(capsysbinary, "eval", tmp_path, "--singles", "-m", "dot", "--json", "--min-prob", "0.3")
    assert code == 0, err
    report = json.loads(out)
    assert report["photos"] == 1 and report["masked"] == 1
    rows = {r["method"]: r for r in report["rows"]}
    assert set(rows) == {"dot (defaults)", "dot 224 only", "dot 448 only", "grad-cam 224x224"}
    assert rows["dot (defaults)"]["recognition"] == 1.0 and rows["dot (defaults)"]["pointing"] == 1.0
    assert 0.0 < rows["dot (defaults)"]["energy"] <= 1.0 and rows["dot (defaults)"]["regions"] >= 1
    code, out, err = run(capsysbinary, "eval", tmp_path / "nothing", "--singles")
    assert code == 2 and "not a folder" in err
