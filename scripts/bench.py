"""Throughput of attnviz against the two obvious baselines, on the same photos at the same network input size.

What is measured, in images per second over a folder of 200 JPEG photos of 640 x 480, each way in a fresh process of its
own (run one after another, never side by side):

* attnviz: `Runner.run` on the folder with default options (concat mode, PNG written per photo, the default
  `--backend auto`: ONNX Runtime where installed), with the allocator set up as the `attnviz` command sets it; the
  encoder is loaded, exported (cached) and warmed up before the clock starts, so the figure is steady-state
  throughput of decode, two forward passes, scoring, render and write. The same with one lane of 2 threads instead
  of two lanes of one (lanes x threads chosen by this measurement), and with `--backend torch`.
* pytorch-grad-cam: what its README does for every picture: PIL decode, resize, normalise, `GradCAM` (forward and
  backward) on the same timm model's last 1280-channel feature map, cam upscaled to the photo, `show_cam_on_image`,
  `cv2.imwrite` of a PNG. This is the tool people reach for, so it is the bar to beat.
* forward-only: decode, resize, normalise and one eager fp32 forward pass per photo, nothing drawn or written. No
  per-image explanation can be cheaper than this, so it is the ceiling; its ratio says how much attnviz adds.
* forward-only, tuned allocator: the same loop after `tune_allocator()`, the glibc setting attnviz makes at start.
  Not a baseline from the issue: it shows how much of attnviz's lead comes from that setting alone.
* limit: decode, resize (attnviz's own resize, the fastest here) and one forward pass of the exported encoder under
  a runtime, nothing else, on 2 lanes of 1 thread or 1 lane of 2 threads. The best of these rows is the limit that
  attnviz's throughput is compared with ("vs limit").
* where the rest goes: attnviz with one pass (`--classify-size 448`: the classes from the map's pass) and with JPEG
  files, and "both passes": the limit plus the recognition pass (resize and forward at the trained scale) that
  attnviz runs by default to rank the classes, still with nothing drawn or written.

Every way runs once per round (`--rounds`, default 3), and the table shows each way's median round; the ratios to
the limit are also given round by round, since this machine's speed drifts by 20% within minutes.

Why fresh processes: glibc raises its mmap threshold for good once large blocks have been freed, so a way that runs
after another in the same process inherits a faster allocator. In one process the forward-only loop ran at 13.3
images/s after the grad-cam way and at 8.4 on its own.

The photos are synthesised once from `sample_images/` (crops, flips, scales, colour jitter, sensor noise; fixed
seed) and cached under --data, so the benchmark needs no network. `--memory` instead runs attnviz over 50 and 500
photos in fresh subprocesses and compares their peak RSS: memory must stay flat however many images go through.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageEnhance

from attnviz.batch.options import RunOptions
from attnviz.batch.runner import Runner
from attnviz.cli.process import tune_allocator
from attnviz.models.devices import cpu_count
from attnviz.models.registry import create_encoder
from attnviz.models.runtime import NEEDS, installed
from attnviz.options import Backend

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "sample_images"
#: The photos the issue of record names: 200 of 640 x 480, the size of an ordinary phone or web photo.
WIDTH, HEIGHT = 640, 480
SEED = 20240611


def synthesise(index: int, sources: list[Image.Image]) -> Image.Image:
    """A WIDTH x HEIGHT 'photo' made from a random 4:3 crop of a sample image, deterministic in `index`."""
    rng = np.random.default_rng([SEED, index])
    src = sources[int(rng.integers(len(sources)))]
    full_w = min(src.width, src.height * WIDTH // HEIGHT)  # largest 4:3 box that fits
    scale = float(rng.uniform(0.55, 1.0))
    w, h = max(8, int(full_w * scale)), max(6, int(full_w * scale * HEIGHT / WIDTH))
    x, y = int(rng.integers(src.width - w + 1)), int(rng.integers(src.height - h + 1))
    image = src.crop((x, y, x + w, y + h)).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        image = enhance(image).enhance(float(rng.uniform(0.75, 1.25)))
    noisy = np.asarray(image, np.float32) + rng.normal(0.0, float(rng.uniform(1.5, 4.0)), (HEIGHT, WIDTH, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))  # sensor grain: JPEGs of realistic size


def photos_folder(data: Path, count: int) -> Path:
    """Where `count` photos of this size are cached (the size in the name: a cache of another size is not reused)."""
    return data / f"photos-{count}-{WIDTH}x{HEIGHT}"


def ensure_photos(folder: Path, count: int, offset: int = 0, prefix: str = "photo") -> Path:
    """`folder` holding {prefix}-0000.jpg ... for `count` photos; files already there are kept (the cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources: list[Image.Image] = []
    for i in range(count):
        path = folder / f"{prefix}-{i:04d}.jpg"
        if path.exists():
            continue
        if not sources:
            sources = [Image.open(p).convert("RGB") for p in sorted(SOURCES.iterdir()) if p.suffix in (".jpg", ".png")]
        partial = path.with_suffix(".part")
        synthesise(offset + i, sources).save(partial, "JPEG", quality=90)
        partial.replace(path)  # a half-written file never looks cached
    return folder


def mib(maxrss: int) -> float:
    """`ru_maxrss` in MiB: it counts bytes on macOS, KiB on Linux."""
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def run_options(
    args: argparse.Namespace, output: str, workers: int | None = None, backend: str = "auto", **other: Any
) -> RunOptions:
    return RunOptions(
        output=output,
        quiet=True,
        batch_size=args.batch_size,
        workers=workers or args.workers,
        size=args.size,
        device=args.device,
        backend=Backend(backend),
        **other,
    )


def attnviz_way(
    args: argparse.Namespace,
    folder: Path,
    warmup: Path,
    out: Path,
    workers: int | None,
    backend: str,
    other: dict[str, Any] | None = None,
) -> Callable[[], int]:
    """Build the Runner and warm it up (neither is timed); the returned callable processes the folder."""
    errors = io.StringIO()
    runner = Runner(run_options(args, str(out), workers, backend, **(other or {})), errors)
    print(f"{args.way}: backend {runner.lanes.explainer.backend_note}", file=sys.stderr)
    runner.run(
        [str(warmup)], None, io.BytesIO()
    )  # its output name differs from every photo's, so the timed run can follow

    def run() -> int:
        if runner.run([str(folder)], None, io.BytesIO()) != 0:
            sys.exit(f"attnviz failed:\n{errors.getvalue()}")
        return runner.writer.summary.written  # each run counts afresh

    return run


def gradcam_way(args: argparse.Namespace, size: tuple[int, int], out: Path) -> Callable[[list[Path]], int]:
    import cv2
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image

    model: Any = create_encoder(fast=False).model.to(args.device)  # eager, as a user of that tool runs it
    model.requires_grad_(True)  # a README user's model has trainable weights; create_encoder() freezes them
    cam = GradCAM(model=model, target_layers=[model.bn2])  # bn2 (BN + ReLU6 after conv_head): the 1280-ch map

    def run(batch: list[Path]) -> int:
        for path in batch:
            image = Image.open(path).convert("RGB")
            rgb = np.asarray(image, np.float32) / 255
            small = np.asarray(image.resize(size, Image.Resampling.BICUBIC), np.float32) / 255
            tensor = torch.from_numpy(((small - 0.5) / 0.5).transpose(2, 0, 1).copy())[None]
            grayscale = cam(input_tensor=tensor, targets=None)[0, :]  # (h, w): already resized to the input
            grayscale = cv2.resize(grayscale, (image.width, image.height))
            visualization = show_cam_on_image(rgb, grayscale, use_rgb=True)
            cv2.imwrite(str(out / f"{path.stem}.png"), cv2.cvtColor(visualization, cv2.COLOR_RGB2BGR))
        return len(batch)

    return run


def forward_way(args: argparse.Namespace, size: tuple[int, int]) -> Callable[[list[Path]], int]:
    model: Any = create_encoder(fast=False).model.to(args.device)  # eager, as a user of that tool runs it

    @torch.inference_mode()
    def run(batch: list[Path]) -> int:
        for path in batch:
            image = Image.open(path).convert("RGB").resize(size, Image.Resampling.BICUBIC)
            pixels = (np.asarray(image, np.float32) / 255 - 0.5) / 0.5
            logits = model(torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None].to(args.device))
            int(logits.argmax())  # waits for the device
        return len(batch)

    return run


def limit_way(
    args: argparse.Namespace, backend: Backend, lanes: int, recognise: bool = False
) -> Callable[[list[Path]], int]:
    """Decode, resize and the runtime's forward pass, nothing else, on `lanes` threads sharing the cores; with
    `recognise`, also the resize and forward pass at the trained scale that attnviz ranks the classes with."""
    from concurrent.futures import ThreadPoolExecutor

    from attnviz.models.export import ensure_onnx
    from attnviz.models.runtime import load_engine

    encoder = create_encoder()
    threads = max(1, cpu_count() // lanes)
    engine = load_engine(backend, encoder.name, ensure_onnx(encoder, print), threads)
    torch.set_num_threads(threads)  # the resize's share, as a lane of attnviz has it

    def one(path: Path) -> None:
        image = Image.open(path).convert("RGB")
        engine(encoder.preprocess(image, args.size)[None])  # (1, 3, h, w)
        if recognise:
            engine(encoder.preprocess(image, encoder.trained_size)[None])  # (1, 3, h', w')

    def run(batch: list[Path]) -> int:
        with ThreadPoolExecutor(lanes) as pool:
            list(pool.map(one, batch))
        return len(batch)

    return run


def busy_cpu_seconds() -> float:
    """CPU seconds spent by the whole machine so far (Linux /proc/stat), 0 where unknown."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(work: Callable[[], int]) -> tuple[int, float, float, tuple[float, float]]:
    """Images done, wall seconds, how many cores other processes kept busy meanwhile (noise), and this process's
    own (user, system) CPU seconds."""
    machine, before, start = busy_cpu_seconds(), os.times(), time.perf_counter()
    done = work()
    seconds = time.perf_counter() - start
    after = os.times()
    user, system = after.user - before.user, after.system - before.system
    others = (busy_cpu_seconds() - machine) - (user + system)
    return done, seconds, max(0.0, others) / seconds, (user, system)


CORES = cpu_count()
#: The ways attnviz runs: name -> (--workers, --backend, other options); None workers: as attnviz picks (one lane
#: per core). The other options show where the time beyond the limit goes (see `report`).
ATTNVIZ_WAYS: dict[str, tuple[int | None, str, dict[str, Any]]] = {
    "attnviz": (None, "auto", {}),
    "attnviz, one lane": (1, "auto", {}),
    "attnviz --backend torch": (None, "torch", {}),
    "attnviz --backend openvino": (None, "openvino", {}),
    "attnviz --classify-size 448": (None, "auto", {"classify_size": 448}),  # one pass: classes from the map's own
    "attnviz --format jpg": (None, "auto", {"format": "jpg"}),  # JPEG instead of PNG files
}
#: The limit ways: name -> (runtime, lanes); each lane gets cores / lanes threads.
LIMIT_WAYS = {
    f"limit: {backend.value}, {lanes} x {CORES // lanes}": (backend, lanes)
    for backend in (Backend.onnxruntime, Backend.openvino)
    for lanes in dict.fromkeys((CORES, 1))
}
#: Not a limit row: the limit's work plus the recognition pass (resize and forward at the trained scale).
BOTH_PASSES = f"both passes: onnxruntime, {CORES} x 1"
WAYS = (
    *ATTNVIZ_WAYS,
    "pytorch-grad-cam",
    "forward-only",
    "forward-only, tuned allocator",
    *LIMIT_WAYS,
    BOTH_PASSES,
)


def measure(args: argparse.Namespace) -> None:
    """--way NAME: set up and warm up one way in this fresh process, time it, print one JSON line."""
    count = 8 if args.quick else args.count
    paths = sorted((photos_folder(args.data, count)).glob("*.jpg"))
    warmup = args.data / "warmup" / "warmup-0000.jpg"
    size = create_encoder().input_size(WIDTH, HEIGHT, args.size)
    scratch = tempfile.TemporaryDirectory(prefix="attnviz-bench-")  # outputs, removed at exit
    out = Path(scratch.name)
    if args.way in ATTNVIZ_WAYS:
        tune_allocator()  # as the attnviz command does
        work = attnviz_way(args, paths[0].parent, warmup, out, *ATTNVIZ_WAYS[args.way])
    else:
        if args.way in ("forward-only, tuned allocator", *LIMIT_WAYS, BOTH_PASSES):
            tune_allocator()
        if args.way in LIMIT_WAYS:
            way = limit_way(args, *LIMIT_WAYS[args.way])
        elif args.way == BOTH_PASSES:
            way = limit_way(args, Backend.onnxruntime, CORES, recognise=True)
        elif args.way == "pytorch-grad-cam":
            way = gradcam_way(args, size, out)
        else:
            way = forward_way(args, size)
        way([warmup])

        def work() -> int:
            return way(paths)

    done, seconds, others, (user, system) = timed(work)
    scratch.cleanup()
    rss = mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    per_image = {"user": user / max(done, 1), "system": system / max(done, 1)}
    row = {"images": done, "seconds": seconds, "others": others, "rss": rss, **per_image}
    print(json.dumps(row))


def benchmark(args: argparse.Namespace) -> None:
    count = 8 if args.quick else args.count
    folder = ensure_photos(photos_folder(args.data, count), count)
    ensure_photos(args.data / "warmup", 1, offset=1_000_000, prefix="warmup")
    size = create_encoder().input_size(WIDTH, HEIGHT, args.size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, device {args.device}")
    print(f"{count} photos {WIDTH}x{HEIGHT} in {folder}; network input {size[0]}x{size[1]}")
    lanes = args.workers or "auto"
    print(f"attnviz options: batch_size={args.batch_size} workers={lanes} size={args.size}, mode concat, PNG")
    runs: dict[str, list[dict[str, float]]] = {}
    for round_ in range(args.rounds):  # every way once per round, so slow drift in the machine hits them alike
        for way in args.ways or WAYS:
            runtime = runtime_of(way)
            if runtime in NEEDS and not all(installed(module) for module in NEEDS[runtime]):
                if not round_:
                    print(f"{way}: skipped, {runtime.value} is not installed")
                continue
            command = [sys.executable, __file__, "--way", way, *passed_options(args)]
            if args.quick:
                command.append("--quick")
            child = subprocess.run(command, capture_output=True, text=True)
            if child.returncode != 0:
                sys.exit(f"{way} failed:\n{child.stderr}")
            if not round_:
                print("".join(line + "\n" for line in child.stderr.splitlines() if line.startswith(way)), end="")
            runs.setdefault(way, []).append(json.loads(child.stdout.strip().splitlines()[-1]))
    rates = {way: [r["images"] / r["seconds"] for r in way_runs] for way, way_runs in runs.items()}
    report({way: median_run(way_runs) for way, way_runs in runs.items()}, rates)


def runtime_of(way: str) -> Backend:
    if way in LIMIT_WAYS:
        return LIMIT_WAYS[way][0]
    return (
        Backend.onnxruntime if way == BOTH_PASSES else Backend(ATTNVIZ_WAYS[way][1] if way in ATTNVIZ_WAYS else "auto")
    )


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median rate (the lower middle one for an even count of runs)."""
    return sorted(runs, key=lambda r: r["images"] / r["seconds"])[(len(runs) - 1) // 2]


def report(results: dict[str, dict[str, float]], rates: dict[str, list[float]]) -> None:
    """The table (each way's median round), the limit and the lanes x threads verdict."""
    rate = {way: r["images"] / r["seconds"] for way, r in results.items()}
    limits = {way: rate[way] for way in results if way in LIMIT_WAYS}
    limit = max(limits, key=limits.__getitem__) if limits else "forward-only"
    header = f"{'way':<36}{'images':>7}{'seconds':>9}{'images/s':>10}{'vs grad-cam':>13}{'vs limit':>10}"
    print(f"\n{header}{'peak RSS':>10}{'other load':>12}{'CPU ms/image: user, system':>28}")
    cam, top = rate.get("pytorch-grad-cam", float("nan")), rate.get(limit, float("nan"))  # --ways may leave out
    for way, r in results.items():
        vs_cam, vs_limit = (f"{rate[way] / of:.2f}x" if of == of else "-" for of in (cam, top))  # NaN: not run
        print(
            f"{way:<36}{int(r['images']):>7}{r['seconds']:>9.2f}{rate[way]:>10.2f}{vs_cam:>13}{vs_limit:>10}"
            f"{r['rss']:>6.0f} MiB{r['others']:>12.2f}{1000 * r['user']:>14.1f}, {1000 * r['system']:.1f}"
        )
    if max(map(len, rates.values())) > 1:
        print("each row is the median round of that way; images/s in every round:")
        for way, seen in rates.items():
            print(f"  {way:<34}" + " ".join(f"{rate:6.2f}" for rate in seen))
        pairs = [(way, limit, "limit") for way in ("attnviz", "attnviz --classify-size 448", "attnviz --format jpg")]
        for way, against, name in [*pairs, ("attnviz", BOTH_PASSES, repr(BOTH_PASSES))]:
            if way in rates and against in rates:  # round by round: the two ran minutes apart at most
                paired = [a / b for a, b in zip(rates[way], rates[against], strict=True)]
                rounds = " ".join(f"{ratio:.2f}" for ratio in paired)
                print(f"{way} vs {name}, round by round: {rounds} (median {float(np.median(paired)):.2f})")
    if limit in rate:
        print(f"vs limit: against {limit!r}, the fastest way to decode, resize and run the network with nothing else")
    print(f"limit rows: lanes x threads per lane, on {CORES} cores")
    one, many = rate.get("attnviz, one lane"), rate.get("attnviz")
    if one is not None and many is not None:
        best = f"one lane of {CORES} threads" if one > many else "one lane per core, 1 thread each (the default)"
        print(f"lanes x threads: {many:.2f} images/s with one lane per core, {one:.2f} with one lane: {best} wins")
    print("each way ran alone in a fresh process; other load: cores kept busy by other processes meanwhile,")
    print("above ~0.1 the figures are not to be trusted")


def passed_options(args: argparse.Namespace) -> list[str]:
    """The options a child process needs to run the same configuration."""
    options = ["--data", str(args.data), "--device", args.device, "--count", str(args.count)]
    options += ["--batch-size", str(args.batch_size), "--size", str(args.size)]
    return options + (["--workers", str(args.workers)] if args.workers else [])


def child(args: argparse.Namespace) -> None:
    """--child DIR: attnviz over DIR in this fresh process, then exit; the parent reads our peak RSS."""
    tune_allocator()  # as the attnviz command does
    with tempfile.TemporaryDirectory(prefix="attnviz-mem-") as out:
        errors = io.StringIO()
        status = Runner(run_options(args, out), errors).run([args.child], None, io.BytesIO())
        sys.stderr.write(errors.getvalue())
        sys.exit(status)


def memory(args: argparse.Namespace) -> None:
    base = ensure_photos(photos_folder(args.data, 48), 48)
    peaks: dict[int, float] = {}
    for count in (50, 500):
        folder = args.data / f"memory-{count}-{WIDTH}x{HEIGHT}"
        if len(list(folder.glob("*.jpg"))) != count:  # repeat the 48 photos, each time with a different crop
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([SEED, count])
            for i in range(count):
                image = Image.open(base / f"photo-{i % 48:04d}.jpg")
                dx, dy = int(rng.integers(0, 96)), int(rng.integers(0, 72))
                crop = image.crop((dx, dy, dx + WIDTH - 96, dy + HEIGHT - 72)).resize((WIDTH, HEIGHT))
                crop.save(partial := folder / f"photo-{i:04d}.part", "JPEG", quality=90)
                partial.replace(partial.with_suffix(".jpg"))
        command = [sys.executable, __file__, "--child", str(folder), *passed_options(args)]
        start = time.perf_counter()
        sys.stdout.flush()  # our lines before the child's
        process = subprocess.Popen(command)
        # this child's rusage, not the max over all children; Linux carries this process's own peak into it across
        # fork and exec, so the figure is the child's own only while that is the larger (not checked here)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        peaks[count] = mib(usage.ru_maxrss)
        seconds = time.perf_counter() - start
        print(f"attnviz on {count:>3} photos: peak RSS {peaks[count]:.0f} MiB, {seconds:.1f} s, exit status {code}")
        if code != 0:
            sys.exit(f"attnviz failed on {folder}; no memory verdict")
    ratio = peaks[500] / peaks[50]
    print(f"500/50 peak RSS ratio: {ratio:.3f} ({'within' if ratio <= 1.2 else 'OVER'} the 1.2x limit)")
    if ratio > 1.2:
        sys.exit(1)


def cold_start(args: argparse.Namespace) -> None:
    """Seconds for `attnviz run` on one photo in a fresh process (the export already cached), against
    `python -c "import torch, torchvision"`: what starting torch alone costs."""
    photo, out = str(SOURCES / "coffee.png"), Path(tempfile.mkdtemp(prefix="attnviz-cold-")) / "coffee.png"
    attnviz = [sys.executable, "-m", "attnviz.cli", "run", photo, "-o", str(out), "--overwrite", "-q"]
    commands = {
        "attnviz run (one photo)": attnviz,
        "attnviz run --backend torch": [*attnviz, "--backend", "torch"],
        "import torch, torchvision": [sys.executable, "-c", "import torch, torchvision"],
    }
    subprocess.run(attnviz, check=True)  # exports on a first run, and warms the file cache
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True)
            seconds[name].append(time.perf_counter() - start)
    for name, times in seconds.items():
        print(f"{name:<28}" + " ".join(f"{t:.2f}" for t in times) + f" s (median {np.median(times):.2f})")
    ratio = float(np.median(seconds["attnviz run (one photo)"]) / np.median(seconds["import torch, torchvision"]))
    print(f"cold start ratio: {ratio:.2f} ({'within' if ratio <= 1.5 else 'OVER'} the 1.5x limit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "bench-data", help="cache folder for the photos")
    parser.add_argument("--count", type=int, default=200, help="photos to time (default 200)")
    parser.add_argument("--quick", action="store_true", help="smoke run on 8 photos")
    parser.add_argument("--memory", action="store_true", help="peak RSS of attnviz on 50 vs 500 photos instead")
    parser.add_argument("--batch-size", type=int, default=RunOptions.batch_size, help="attnviz --batch-size")
    parser.add_argument("--workers", type=int, default=None, help="attnviz --workers (default: as attnviz picks)")
    parser.add_argument("--size", type=int, default=RunOptions.size, help="shorter side fed to the network")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for all three ways (default cpu)")
    parser.add_argument("--cold", action="store_true", help="cold start of one photo vs import torch, torchvision")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command for --cold")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every way; the table shows the median")
    parser.add_argument(
        "--ways", type=lambda text: [w.strip() for w in text.split(";")], help="only these ways, ';'-separated"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        measure(args)
    elif args.child:
        child(args)
    elif args.memory:
        memory(args)
    elif args.cold:
        cold_start(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
