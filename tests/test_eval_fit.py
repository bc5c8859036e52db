"""`attnviz eval`, `attnviz fit` and fitted heads."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from attnviz.attention.datafree import data_free_scorer
from attnviz.attention.heads import head_mode, load_head, save_head
from attnviz.cli.app import main
from attnviz.errors import InputError, UsageError
from attnviz.models.registry import create_encoder
from attnviz.options import Mode

from helpers import SAMPLES, Evil, TinyEncoder


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled photos, each also mirrored: 14 photos of 7 classes."""
    folder = tmp_path_factory.mktemp("photos")
    for path in sorted(SAMPLES.glob("*.*")):
        if path.suffix in (".png", ".jpg"):
            with Image.open(path) as im:
                rgb = im.convert("RGB")
                rgb.save(folder / f"{path.stem}.png")
                ImageOps.mirror(rgb).save(folder / f"{path.stem}_mirror.png")
    return folder


def test_eval_prints_every_figure_and_is_reproducible(photos: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = ["eval", str(photos), "--mosaics", "3", "--images", "2", "--size", "224", "--json", "--seed", "5"]
    assert main(args) == 0
    first = capsys.readouterr().out
    once = ["eval", str(photos), "--mosaics", "1", "--images", "1", "--size", "224", "--json", "-m", "concat"]
    assert main([*once, "--no-gradcam", "--seed", "5"]) == 0
    again = capsys.readouterr().out
    assert main([*once, "--no-gradcam", "--seed", "5"]) == 0
    assert capsys.readouterr().out == again  # same folder, same seed: the same figures
    assert json.loads(again)["rows"][0]["queries"] == 4
    report = json.loads(first)
    assert [r["method"] for r in report["rows"]] == ["dot", "general", "concat", "grad-cam"]
    for row in report["rows"]:
        assert 0 <= row["pointing"] <= 1 and 0 <= row["energy"] <= 1
        assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
        assert row["queries"] == 12 and row["auc_images"] == 2
    assert report["rows"][0]["pointing"] >= 0.75
    assert (
        main(["eval", str(photos), "--mosaics", "2", "--images", "1", "--size", "224", "-m", "dot", "--no-gradcam"])
        == 0
    )
    table = capsys.readouterr().out
    assert "pointing" in table and "deletion" in table and "8 queries on 2 mosaics" in table


def test_deletion_and_insertion_reward_the_right_order(lite0) -> None:  # type: ignore[no-untyped-def]
    """A map's own order deletes the evidence faster and inserts it sooner than the reverse order does."""
    import numpy as np

    from attnviz.explainer import Explainer
    from attnviz.quality.evaluate import Method, deletion_insertion

    class Reversed(Method):
        def grid(self, batch, targets):  # type: ignore[no-untyped-def]
            return [(-ranking, mass) for ranking, mass in super().grid(batch, targets)]

    explainer = Explainer(lite0, "dot", 224, classify_size=224)
    x = lite0.preprocess(Image.open(SAMPLES / "coffee.png").convert("RGB"), 224)
    right = deletion_insertion(Method("dot", explainer), x, 967)
    wrong = deletion_insertion(Reversed("reversed", explainer), x, 967)
    assert right[0] < wrong[0] and right[1] > wrong[1], (right, wrong)
    assert np.isfinite(right).all()


def test_eval_needs_enough_photos(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["eval", str(tmp_path)]) == 1  # an input problem, as the README has it
    assert "needs at least 4 readable images" in capsys.readouterr().err


def test_fit_reports_before_after_and_the_head_works_everywhere(
    photos: Path, tmp_path: Path, capsys, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        str(photos),
        "--mode",
        "general",
        "-o",
        "h.safetensors",
        "--steps",
        "3",
        "--size",
        "224",
        "--holdout",
        "0.3",
        "--json",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["train_images"] + report["heldout_images"] == 14
    assert 0 <= report["heldout_before"]["pointing"] <= 1 and 0 <= report["heldout_after"]["pointing"] <= 1
    assert "held-out pointing" in captured.err and ("did NOT help" in captured.err) != report["helped"]
    assert Path("h.safetensors").exists()
    # the optimiser moved the head: an optimiser that did nothing would save the data-free start
    encoder = create_encoder()
    fitted, start = load_head("h.safetensors", encoder, Mode.general), data_free_scorer(encoder, Mode.general)
    moved = [
        not torch.equal(a, b) for a, b in zip(fitted.state_dict().values(), start.state_dict().values(), strict=True)
    ]
    assert any(moved)
    assert main(args) == 1 and "already exists" in capsys.readouterr().err  # never silently replaced

    sample = str(SAMPLES / "coffee.png")
    assert main(["run", sample, "--mode", "general", "--head", "h.safetensors", "-o", "x.png"]) == 0
    assert main(["run", sample, "--mode", "concat", "--head", "h.safetensors", "-o", "y.png"]) == 2
    assert "this head is for --mode general, not concat" in capsys.readouterr().err
    assert main(["compare", sample, "--head", "h.safetensors", "-o", "c.png", "--size", "224"]) == 0
    eval_args = [
        "eval",
        str(photos),
        "--mosaics",
        "2",
        "--images",
        "1",
        "--size",
        "224",
        "--head",
        "h.safetensors",
        "--json",
        "-m",
        "general",
    ]
    assert main(eval_args) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["method"] for r in rows] == ["general", "general h.safetensors", "grad-cam"]


def test_head_round_trip_and_refusals(tmp_path: Path) -> None:
    encoder = create_encoder("tiny_test")
    scorer = data_free_scorer(encoder, Mode.concat)
    save_head(scorer, encoder, tmp_path / "c.safetensors")
    loaded = load_head(tmp_path / "c.safetensors", encoder, Mode.concat)
    for key, value in scorer.state_dict().items():
        assert (loaded.state_dict()[key] == value).all()
    with pytest.raises(UsageError, match="this head is for --mode concat, not general"):
        load_head(tmp_path / "c.safetensors", encoder, Mode.general)
    with pytest.raises(UsageError, match="fitted for encoder tiny_test, not efficientnet_lite0"):
        load_head(tmp_path / "c.safetensors", create_encoder("efficientnet_lite0"), Mode.concat)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes((tmp_path / "c.safetensors").read_bytes()[:100])
    with pytest.raises(InputError, match=r"corrupt\.safetensors: not an attnviz head"):
        load_head(corrupt, encoder, Mode.concat)
    with pytest.raises(InputError, match=r"missing\.safetensors: no such head file$"):  # not "not an attnviz head"
        head_mode(tmp_path / "missing.safetensors")
    with pytest.raises(UsageError, match="no parameters to save"):
        save_head(data_free_scorer(encoder, Mode.dot), encoder, tmp_path / "d.safetensors")


def test_a_pickled_head_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    Path("evil.safetensors").write_bytes(pickle.dumps(Evil()))
    Path("evil.pt").write_bytes(pickle.dumps(Evil()))
    for head in ("evil.safetensors", "evil.pt"):
        code = main(["run", str(SAMPLES / "coffee.png"), "--mode", "general", "--head", head, "-o", "o.png"])
        err = capsys.readouterr().err
        assert code == 1 and "not an attnviz head" in err and err.count("\n") == 1
    assert not Path("pwned").exists() and not Path("o.png").exists()


@pytest.mark.parametrize(("rows", "cols"), [(14, 14), (7, 7), (3, 5)])
def test_tile_regions_cover_the_grid_once(rows: int, cols: int) -> None:
    from attnviz.quality.fit import tile_masks

    masks = tile_masks(rows, cols)  # (4, N)
    assert masks.shape == (4, rows * cols)
    assert (masks.sum(0) == 1).all()  # every cell belongs to exactly one tile


def test_concat_fit_moves_the_projections_and_keeps_the_tanh_pairs(photos: Path, lite0) -> None:  # type: ignore[no-untyped-def]
    import torch
    from torch.nn.utils import parametrize

    from attnviz.attention.scorers import ConcatScorer, TanhPairs
    from attnviz.commands.quality import load_folder, tile_classes
    from attnviz.quality.fit import fit_head

    _, images = load_folder(str(photos))
    classes = tile_classes(lite0, images, 224)
    fitted, _ = fit_head(lite0, Mode.concat, images, classes, size=224, steps=4, holdout=0.3)
    begun = data_free_scorer(lite0, Mode.concat)
    assert isinstance(fitted, ConcatScorer) and isinstance(begun, ConcatScorer)
    scorer, start = fitted, begun
    assert not parametrize.is_parametrized(scorer.combine)  # a plain head again, saved like any other
    assert not torch.equal(scorer.combine.weight, start.combine.weight)  # the projections moved
    TanhPairs(scorer.enc_dim).right_inverse(scorer.combine.weight)  # and every +- pair of units is still exact
    assert scorer.eval().paired() is not None  # so inference takes the closed form (attention/paired.py)
    assert torch.equal(scorer.combine.bias, start.combine.bias) and torch.equal(scorer.v.weight, start.v.weight)


def test_tanh_pairs_refuse_a_head_whose_units_are_not_paired() -> None:
    import torch

    from attnviz.attention.scorers import TanhPairs

    pairs = TanhPairs(enc_dim=3)
    weight = pairs(torch.randn(2, 3), torch.randn(2, 4))  # (8, 7)
    enc, query = pairs.right_inverse(weight)
    assert torch.equal(pairs(enc, query), weight)
    weight[5, 1] += 1e-3
    with pytest.raises(UsageError, match="not in the paired-tanh form"):
        pairs.right_inverse(weight)


class _SpikedEncoder(TinyEncoder):
    """The tiny encoder with one channel that lights the top-left cell of every picture, a channel every class's
    classifier row reads alike (so no class gains by it). The data-free heads are built from the classifier, so
    they point at that corner for every class: a case that needs fitting."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.fc.weight[:, 0] = 1.0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x).clone()  # (B, 16, h, w)
        features[:, 0] = 0.0
        features[:, 0, 0, 0] = 8.0
        return features


@pytest.mark.parametrize("mode", [Mode.general, Mode.concat])
def test_fit_improves_held_out_pointing_where_the_data_free_head_is_fooled(mode: Mode) -> None:
    from attnviz.quality.fit import fit_head

    rng = np.random.default_rng(0)
    colours = [(230, 30, 30), (30, 200, 40), (40, 60, 230), (240, 220, 40), (200, 40, 220)]  # one per class
    images, classes = [], []
    for index, colour in enumerate(colours):
        for _ in range(6):
            pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, 20, (64, 64, 3)), 0, 255)
            images.append(Image.fromarray(pixels.astype(np.uint8)))
            classes.append(index)
    _, report = fit_head(_SpikedEncoder(), mode, images, classes, size=128, steps=100, holdout=0.3)
    assert report.before.pointing < 0.4  # the corner, whatever the class: about one tile in four
    assert report.after.pointing > report.before.pointing + 0.25, (report.before, report.after)
    assert report.helped
