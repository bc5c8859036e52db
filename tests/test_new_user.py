"""What a new user hit on a first try (issue 10): each case through the real entry point, as the user typed it."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnviz.attention.datafree import data_free_scorer
from attnviz.errors import UsageError
from attnviz.explainer import Explainer
from attnviz.models.devices import pick_device
from attnviz.models.registry import create_encoder
from attnviz.options import Mode, Query

from helpers import TINY, one_error_line, run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_topk_beyond_the_classes_is_a_usage_error(capsysbinary, small_png: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "-k", "2000")
    assert code == 2
    one_error_line(err, "--topk 2000", "only 5 classes")
    code, _, err = run(capsysbinary, "compare", small_png, *TINY, "-k", "2000")
    assert code == 2
    one_error_line(err, "only 5 classes")


@pytest.mark.parametrize("command", ["run", "compare"])
def test_every_command_checks_targets_the_same_way(capsysbinary, small_png: Path, command: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, command, small_png, *TINY, "-k", "0")
    assert code == 2
    one_error_line(err, "--topk must be at least 1")
    code, _, err = run(capsysbinary, command, small_png, *TINY, "-k", "2", "-t", "1")
    assert code == 2
    one_error_line(err, "either --target", "or --topk")


def test_an_inner_layer_with_an_inplace_activation_after_it_draws_a_map(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", samples / "coffee.png", "--layer", "conv_head", "--json", "-o", "c.png")
    assert code == 0, err
    assert Path("c.png").is_file()


def test_a_pooled_layer_is_not_offered_or_accepted_as_spatial(capsysbinary, samples: Path, lite0) -> None:  # type: ignore[no-untyped-def]
    assert "global_pool.pool" not in lite0.spatial_layers() and "conv_head" in lite0.spatial_layers()
    code, _, err = run(capsysbinary, "run", samples / "coffee.png", "--layer", "global_pool.pool")
    assert code == 2
    one_error_line(err, "global_pool.pool", "no spatial map")


def test_compare_never_writes_over_its_input(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    image = tmp_path / "k.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(image)
    before = image.read_bytes()
    code, _, err = run(capsysbinary, "compare", image, "-o", image, "--overwrite", *TINY)
    assert code == 1
    one_error_line(err, "refusing to write over the input")
    assert image.read_bytes() == before


def test_file_arguments_are_named_by_themselves_not_by_their_folders(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = (samples / "coffee.png").resolve(), (samples / "chelsea.png").resolve()
    code, _, err = run(capsysbinary, "run", a, b, *TINY, "-q")
    assert code == 0, err
    assert sorted(p.name for p in Path().rglob("*.png")) == ["chelsea.attn-concat.png", "coffee.attn-concat.png"]
    assert Path("coffee.attn-concat.png").is_file()  # here, not under ./<absolute folders>/


def test_an_image_name_for_several_inputs_is_refused(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", samples / "coffee.png", samples / "chelsea.png", *TINY, "-o", "two.png")
    assert code == 2
    one_error_line(err, "two.png", "output folder")
    assert not Path("two.png").exists()


def test_an_output_without_extension_is_a_folder(capsysbinary, small_png: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "-k", "3", "-o", "top")
    assert code == 0, err
    assert sorted(p.name for p in Path("top").iterdir()) == [f"small.attn-concat.top{r}.png" for r in (1, 2, 3)]
    assert all(f"top/small.attn-concat.top{r}.png" in err for r in (1, 2, 3))  # stderr names every map
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "-o", "map.gif")
    assert code == 2
    one_error_line(err, "map.gif", ".png")


def test_degenerate_sizes_and_conflicting_flags_are_refused(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", samples / "coffee.png", "-s", "33")
    assert code == 2
    one_error_line(err, "--size 33", "stride 32", "at least 64")
    code, _, err = run(capsysbinary, "run", samples / "coffee.png", *TINY, "--skip-existing", "--overwrite")
    assert code == 2
    one_error_line(err, "--skip-existing", "--overwrite")


def test_eval_json_with_no_curve_images_is_strict_json(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(
        capsysbinary, "eval", samples, "--mosaics", "1", "--images", "0", "--no-gradcam", "-m", "dot", "--json"
    )
    assert code == 0, err

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    row = json.loads(out, parse_constant=no_constants)["rows"][0]
    assert row["deletion_auc"] is None and row["insertion_auc"] is None and 0 <= row["pointing"] <= 1


def test_bare_command_prints_the_help_as_written(capsysbinary) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsysbinary)
    assert code == 0 and err == ""
    text = out.decode()
    assert text.startswith("Usage: attnviz") and "\n  run " in text and "Examples:" in text


@pytest.mark.parametrize("command", ["run", "compare", "labels", "eval", "fit", "encoders"])
def test_help_has_examples_and_no_python_type_names(capsysbinary, command: str) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsysbinary, command, "--help")
    text = out.decode()
    assert code == 0 and "Examples:" in text and f"attnviz {command}" in text
    assert not re.search(r"<(list\[str\]|str|int range|float range|int)>", text), text


def test_shell_completion_is_offered(capsysbinary) -> None:  # type: ignore[no-untyped-def]
    _, out, _ = run(capsysbinary, "--help")
    assert "--install-completion" in out.decode() and "--show-completion" in out.decode()


def test_fit_offers_only_the_modes_with_parameters(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "fit", samples, "-m", "dot")
    assert code == 2
    one_error_line(err, "'dot' is not one of 'general', 'concat'")


def test_labels_without_a_match_says_so(capsysbinary) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsysbinary, "labels", "zzzz", "-e", "tiny_test")
    assert code == 1 and out == b""
    assert "no class name of tiny_test contains 'zzzz'" in err


def test_a_failed_download_prints_nothing_on_stdout(capsysbinary, small_png: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys
    from urllib.error import URLError

    import torchvision.models

    def offline(name: str, weights: object = None, **kwargs: object) -> None:
        sys.stdout.write('Downloading: "https://example.invalid/x.pth" to /nowhere\n')  # what torch.hub prints
        raise URLError("offline")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    code, out, err = run(capsysbinary, "run", small_png, "-e", "resnet18", "--json")
    assert code == 1 and out == b""
    one_error_line(err, "resnet18", "--weights FILE")
    assert "Downloading" not in err


def test_a_head_file_sets_its_own_mode(capsysbinary, small_png: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from attnviz.attention.heads import save_head

    encoder = create_encoder("tiny_test")
    head = tmp_path / "g.safetensors"
    save_head(data_free_scorer(encoder, Mode.general), encoder, head)
    code, out, err = run(capsysbinary, "run", small_png, *TINY, "--head", head, "--json")
    assert code == 0, err
    assert json.loads(out)["mode"] == "general" and Path("small.attn-general.png").is_file()
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "--head", head, "-m", "concat")
    assert code == 2
    one_error_line(err, "this head is for --mode general, not concat")


def test_nul_separated_paths_without_dash_zero_get_a_hint(capsysbinary, small_png: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    data = f"{small_png}\0{small_png}\0".encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, _, err = run(capsysbinary, "run", "-", *TINY, "-o", "maps")
    assert code == 1
    assert "give -0 (--null)" in err and str(small_png) in err


def test_annotate_adds_a_caption_band_with_the_colour_bar(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", samples / "coffee.png", "--annotate", "-o", "a.png", "-c", "viridis")
    assert code == 0, err
    code, _, err = run(capsysbinary, "run", samples / "coffee.png", "-o", "b.png", "-c", "viridis")
    with Image.open("a.png") as a, Image.open("b.png") as b:
        assert a.width == b.width and a.height > b.height
        assert np.array_equal(np.asarray(a)[: b.height], np.asarray(b))  # the overlay itself is unchanged
        band = np.asarray(a)[b.height :].reshape(-1, 3).astype(int)
    # viridis's two ends appear in the band: the colour bar is there
    assert np.abs(band - [68, 1, 84]).sum(axis=1).min() < 30 and np.abs(band - [253, 231, 37]).sum(axis=1).min() < 30


# -- the Python API --------------------------------------------------------------------------------------------


def test_explain_takes_a_path_an_image_an_array_and_a_tensor(samples: Path) -> None:
    explainer = Explainer("tiny_test", "dot", 64)
    image = Image.open(samples / "coffee.png").convert("RGB")
    pixels = np.array(image)
    maps = [
        explainer.explain(str(samples / "coffee.png")).weights,
        explainer.explain(samples / "coffee.png").weights,
        explainer.explain(image).weights,
        explainer.explain(pixels).weights,
        explainer.explain(pixels.astype(np.float32) / 255).weights,
        explainer.explain(torch.from_numpy(pixels).permute(2, 0, 1)).weights,
        explainer.explain(torch.from_numpy(pixels).permute(2, 0, 1).float() / 255).weights,
    ]
    for weights in maps[1:]:
        np.testing.assert_allclose(weights, maps[0], atol=1e-6)
    with pytest.raises(UsageError, match=r"\(3, H, W\)"):
        explainer.explain(torch.zeros(5, 8, 8))


def test_explainer_takes_weights_and_head_and_defaults_to_the_cli_device(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from attnviz.attention.heads import save_head

    encoder = create_encoder("tiny_test")
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, str(weights))
    head = tmp_path / "c.safetensors"
    save_head(data_free_scorer(encoder, Mode.concat), encoder, head)
    explainer = Explainer("tiny_test", size=64, weights=str(weights), head=head)
    assert explainer.mode is Mode.concat and explainer.device == torch.device(pick_device("auto"))
    assert explainer.query is Query.classifier


def test_the_readme_python_snippet_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S)
    assert snippet is not None
    monkeypatch.chdir(ROOT)
    exec(compile(snippet.group(1), "README.md", "exec"), {})


def test_what_the_review_found_ends_in_one_line(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Inputs that used to end in tracebacks: an image too wide for WebP, a text file as weights, a labels file that
    is not UTF-8, a target that only looks like a number, a torchvision detector."""
    wide = tmp_path / "pano.png"
    Image.fromarray(np.zeros((40, 17000, 3), np.uint8)).save(wide)
    code, _, err = run(capsysbinary, "run", wide, *TINY, "-o", tmp_path / "pano.webp")
    assert code == 1
    one_error_line(err, "cannot encode as WEBP")
    weights = tmp_path / "w.txt"
    weights.write_text("hello world\n")
    code, _, err = run(capsysbinary, "run", wide, "-w", weights, "-o", tmp_path / "x.png")
    assert code == 1 and "Traceback" not in err and "w.txt" in err
    labels = tmp_path / "l.txt"
    labels.write_bytes(b"caf\xe9\n")
    code, _, err = run(capsysbinary, "labels", "--labels", labels, "-e", "tiny_test")
    assert code == 1
    one_error_line(err, "labels must be UTF-8")
    code, _, err = run(capsysbinary, "run", wide, *TINY, "-t=--1", "-o", tmp_path / "y.png")
    assert code == 2
    one_error_line(err, "--1")
    code, _, err = run(capsysbinary, "run", wide, "-e", "torchvision:fasterrcnn_resnet50_fpn", "-o", tmp_path / "z.png")
    assert code == 2
    one_error_line(err, "is not an image classifier")


def test_layouts_are_read_by_the_squarest_cells() -> None:
    from attnviz.models.grids import as_grid

    nhwc = torch.zeros(1, 112, 112, 96)  # Swin's first stage at 448 px: channels last
    grid = as_grid(nhwc, 448, 448)
    assert grid is not None and grid.cells.shape == (1, 96, 112, 112)
    tokens = torch.zeros(1, 1 + 4 + 16, 8)  # class + 4 registers + 4 x 4 patches at 64 px
    grid = as_grid(tokens, 64, 64)
    assert grid is not None and grid.cells.shape == (1, 8, 4, 4)


def test_an_encoder_object_refuses_options_it_would_ignore() -> None:
    encoder = create_encoder("tiny_test")
    with pytest.raises(UsageError, match="an Encoder object is used as it is"):
        Explainer(encoder, "dot", 64, layer="body.0")


def test_compare_checks_its_style_before_loading_a_model(capsysbinary, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import attnviz.commands.compare as compare_command

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before --alpha was checked")

    monkeypatch.setattr(compare_command, "create_encoder", no_model)
    code, _, err = run(
        capsysbinary, "compare", ROOT / "sample_images" / "coffee.png", "-a", "2", "-o", tmp_path / "f.png"
    )
    assert code == 2
    one_error_line(err, "--alpha must be between 0 and 1")
