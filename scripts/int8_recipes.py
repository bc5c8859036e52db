"""Can int8 serve attnviz's default encoder without changing the answer? Post-training quantisation recipes for
EfficientNet-Lite0 under ONNX Runtime, each scored against fp32 on photos with the default job's two passes.

For every recipe: the share of photos whose top-1 class (recognition pass, trained scale) is the same as fp32's,
the correlation of the concat map's grid weights (map pass at 448, fp32's class) with fp32's, and the time of both
passes, int8 against fp32, on one thread. attnviz would offer int8 only at 99% top-1 agreement and 0.99 map
correlation (issue 22's bar).

    python scripts/int8_recipes.py PHOTOS_DIR [--calibration DIR] [--count 40]

PHOTOS_DIR: held-out photos (e.g. `scripts/make_singles.py`'s); calibration photos default to bench.py's.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from attnviz.attention.datafree import cached_scorer
from attnviz.models.export import ensure_onnx
from attnviz.models.registry import create_encoder
from attnviz.options import Mode

ROOT = Path(__file__).resolve().parent.parent
#: name -> (ops quantised, how many of the first / last convolutions stay fp32, activation type)
RECIPES: dict[str, tuple[list[str], int, int, QuantType]] = {
    "Conv+Gemm, all, u8": (["Conv", "Gemm"], 0, 0, QuantType.QUInt8),
    "Conv+Gemm, stem and head fp32, u8": (["Conv", "Gemm"], 1, 1, QuantType.QUInt8),
    "Conv+Gemm, stem and head fp32, s8": (["Conv", "Gemm"], 1, 1, QuantType.QInt8),
    "Conv+Gemm+Clip, all, u8": (["Conv", "Gemm", "Clip"], 0, 0, QuantType.QUInt8),
    "Conv+Gemm+Clip, stem and head fp32, u8": (["Conv", "Gemm", "Clip"], 1, 1, QuantType.QUInt8),
    "Conv+Gemm+Clip, stem and last 13 fp32, u8": (["Conv", "Gemm", "Clip"], 1, 13, QuantType.QUInt8),
}


class Calibration(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"pixels": batch}


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("--calibration", type=Path)
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    encoder = create_encoder()
    if args.calibration is None:
        from bench import ensure_photos, photos_folder  # scripts/ is on sys.path when this file runs

        args.calibration = ensure_photos(photos_folder(ROOT / "bench-data", 48), 48)
    calibration_photos = sorted(args.calibration.glob("*.jpg"))[:24]
    images = [Image.open(p).convert("RGB") for p in calibration_photos]
    batches = [encoder.preprocess(im, s)[None].numpy() for im in images for s in (448, encoder.trained_size)]
    photos = [Image.open(p).convert("RGB") for p in sorted(args.photos.glob("*.jpg"))[: args.count]]
    scorer = cached_scorer(encoder, Mode.concat)
    vectors = encoder.class_vectors()
    assert vectors is not None
    fp32 = session(ensure_onnx(encoder, print))
    work = Path(tempfile.mkdtemp(prefix="attnviz-int8-"))
    prepared = work / "prepared.onnx"
    quant_pre_process(str(ensure_onnx(encoder, print)), str(prepared), skip_symbolic_shape=True)
    convs = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Conv"]
    print(f"{len(photos)} photos from {args.photos}; calibration: {len(images)} photos from {args.calibration}")
    print("| recipe | top-1 as fp32 | map correlation (median, min) | both passes int8 / fp32 |")
    print("|---|---|---|---|")
    for name, (ops, first, last, activations) in RECIPES.items():
        out = work / f"{len(ops)}-{first}-{last}-{activations.name}.onnx"
        quantize_static(
            str(prepared),
            str(out),
            Calibration(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            op_types_to_quantize=ops,
            nodes_to_exclude=convs[:first] + convs[len(convs) - last :],
            activation_type=activations,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        int8 = session(out)
        same, correlations, seconds = 0, [], {"fp32": 0.0, "int8": 0.0}
        for image in photos:
            small = encoder.preprocess(image, encoder.trained_size)[None].numpy()
            big = encoder.preprocess(image, 448)[None].numpy()
            outputs = {}
            for kind, runner in (("fp32", fp32), ("int8", int8)):
                start = time.perf_counter()
                logits = runner.run(None, {"pixels": small})[1]  # (1, 1000)
                features = runner.run(None, {"pixels": big})[0]  # (1, 1280, rows, cols)
                seconds[kind] += time.perf_counter() - start
                outputs[kind] = (int(logits.argmax()), features)
            chosen = outputs["fp32"][0]
            same += int(outputs["int8"][0] == chosen)
            maps = []
            for _, features in outputs.values():
                cells = torch.from_numpy(features).flatten(2).transpose(1, 2).float()  # (1, N, 1280)
                with torch.inference_mode():
                    maps.append(scorer(cells, vectors[chosen][None]).weights.numpy().ravel())
            correlations.append(float(np.corrcoef(*maps)[0, 1]))
        print(
            f"| {name} | {same / len(photos):.3f} | {np.median(correlations):.3f}, {min(correlations):.3f} |"
            f" {seconds['int8'] / seconds['fp32']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
