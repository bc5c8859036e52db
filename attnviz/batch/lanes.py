"""Lanes: the model-owning core of a batch. Each worker thread carries a few consecutive inputs through decode,
network, scores, drawing and encoding; `Lanes.results` yields them finished, in input order.

On a CPU each lane runs the network with its share of the cores (one core each on a 2-core machine), so no stage
waits on another and no thread pool's barrier is held up by a neighbour: measured on 2 cores, 14.5 images/s against
11.5 for one network thread fed by decode and render pools. At most two units of work per lane are in flight, so
memory stays flat however many images go through. Nothing here writes a file or prints: the caller does (the
command line's `Runner`, the audit, a Ray actor).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attnviz.batch.options import STDOUT, RunOptions, check_run_options
from attnviz.batch.plan import Item
from attnviz.errors import AttnvizError, OutputError
from attnviz.explainer import Explainer
from attnviz.io.images import LoadedImage, load_image
from attnviz.io.outputs import encode_image, image_format, suffix_format
from attnviz.models.devices import cpu_count, pick_device
from attnviz.models.generic import read_labels
from attnviz.models.registry import create_encoder
from attnviz.options import Backend
from attnviz.record import MapRecord, Record
from attnviz.render.overlay import check_style, overlay_image
from attnviz.results import GridResult, prediction_json

#: More lanes than this only multiply memory: past 4, giving each lane several cores scales as well.
MAX_LANES = 4
#: Lanes on a CUDA device.
GPU_LANES = 2


def build_explainer(options: RunOptions, threads: int = 0, notify: Callable[[str], None] | None = None) -> Explainer:
    """The explainer `options` ask for, checked against the model (bad size, a class mode on a backbone); its
    `check_targets` checks `--target` and `--topk`."""
    check_run_options(options)
    suffix_format("." + options.format.lower().lstrip("."))  # validates the format before any work
    check_style(options.colormap, options.alpha)
    names = read_labels(options.labels) if options.labels else None
    encoder = create_encoder(options.encoder, options.weights, options.layer, labels=names)
    explainer = Explainer(
        encoder,
        options.mode,
        options.size,
        device=options.device,
        query=options.query,
        classify_size=options.classify_size,
        head=options.head,
        backend=options.backend,
        threads=threads,
        notify=notify,
    )
    return explainer


def map_tags(targets: list[int], topk: int) -> list[str]:
    """One output per map: the class index in the name for several --target, the rank for --topk."""
    if len(targets) > 1:
        return [f".{t}" for t in targets]
    if topk > 1:
        return [f".top{r}" for r in range(1, topk + 1)]
    return [""]


def planning_explainer(options: RunOptions) -> Explainer:
    """An explainer for planning alone (names, checks), as a Ray driver needs: on the CPU, under torch, so no
    runtime is exported and no device is taken."""
    return build_explainer(replace(options, device="cpu", backend=Backend.torch), notify=lambda _: None)


def _shapes(item: Item) -> tuple[object, object]:
    """Inputs batch together only when both passes see the same shapes."""
    return (
        None if item.tensor is None else item.tensor.shape,
        None if item.small is None else item.small.shape,
    )


class Lanes:
    """Planned `Item`s in, finished ones out (drawn, encoded, described by their `Record`), in order."""

    def __init__(self, options: RunOptions, note: Callable[[str], None] = lambda _: None) -> None:
        self.options = options
        device = pick_device(options.device)
        # MPS aborts when two threads use it at once (pytorch#197805): there the network runs one lane at a time.
        # On CUDA two lanes keep the GPU busy while one of them decodes and draws; more only queue on the device.
        self.lanes = options.workers or {"cpu": min(cpu_count(), MAX_LANES), "mps": 1}.get(device, GPU_LANES)
        self.device_lock: AbstractContextManager[object] = threading.Lock() if device == "mps" else nullcontext()
        # each lane's runtime pass on its own share of the cores
        self.explainer = build_explainer(options, max(1, cpu_count() // self.lanes), note)
        self.mode = self.explainer.mode
        self.targets = self.explainer.check_targets(options.targets, options.topk)
        self.map_tags = map_tags(self.targets, options.topk)
        self.suffix = "." + options.format.lower().lstrip(".")
        self.halt_after = float("inf")  # with --fail-fast: sequence number of the first known failure

    def failed(self, item: Item, message: str) -> Item:
        """Record a failure; with --fail-fast nothing after it in input order is worked on any more."""
        item.error = message
        if self.options.fail_fast:
            self.halt_after = min(self.halt_after, item.seq)
        return item

    # -- driver ---------------------------------------------------------------------------------------------

    def results(self, items: Iterable[Item | None]) -> Generator[Item, None, None]:
        """Every item, finished, in order. A None among `items` starts work on what has arrived (a slow pipe).
        Closing the iterator (or an exception in the consumer) stops the lanes: nothing more is drawn."""
        self.halt_after = float("inf")
        pending: deque[Future[list[Item]]] = deque()
        chunk: list[Item] = []
        with self.lane_threads(), ThreadPoolExecutor(self.lanes, "attnviz-lane") as lanes:
            try:
                for item in items:
                    if item is not None:
                        if item.error is not None:
                            self.failed(item, item.error)
                        chunk.append(item)
                        if len(chunk) < self.options.batch_size:
                            continue
                    if chunk:  # full, or the next path is slow to come: start on what there is
                        pending.append(lanes.submit(self.process, chunk))
                        chunk = []
                    while pending and (len(pending) >= 2 * self.lanes or pending[0].done()):
                        yield from pending.popleft().result()
                if chunk:
                    pending.append(lanes.submit(self.process, chunk))
                while pending:
                    yield from pending.popleft().result()
            finally:
                self.halt_after = -1  # lanes still busy stop drawing
                for future in pending:
                    future.cancel()

    @contextmanager
    def lane_threads(self) -> Iterator[None]:
        """Each lane gets an equal share of the cores for its torch work (the network on a CPU; resizing always)."""
        before = torch.get_num_threads()
        torch.set_num_threads(max(1, cpu_count() // self.lanes))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # -- stages ---------------------------------------------------------------------------------------------

    def load(self, item: Item) -> LoadedImage:
        """The input's picture: read from its path (a Ray actor may hand over bytes or pixels instead)."""
        return load_image(item.job.input, self.options.max_pixels)

    def decode(self, item: Item) -> Item:
        try:
            loaded = self.load(item)
            item.image, item.frames = loaded.image, loaded.frames
            item.tensor = self.explainer.preprocess(loaded.image)  # (3, h, w)
            item.small = self.explainer.preprocess_classify(loaded.image)  # (3, h', w') or None
        except AttnvizError as exc:
            self.failed(item, str(exc))
        except MemoryError:
            self.failed(item, f"{item.job.input}: out of memory while decoding")
        return item

    def process(self, chunk: list[Item]) -> list[Item]:
        """One lane's unit of work: decode a few consecutive inputs, run the network on each run of equal-size
        pictures, then draw and encode every map. Files are written later, in input order, by the caller."""
        for item in chunk:
            if item.error is None and not item.skipped and item.seq <= self.halt_after:
                self.decode(item)
        batch: list[Item] = []
        for item in chunk:
            if item.tensor is None:  # failed or skipped
                continue
            if batch and _shapes(item) != _shapes(batch[0]):
                self.infer(batch)
                batch = []
            batch.append(item)
        if batch:
            self.infer(batch)
        return chunk

    def infer(self, batch: list[Item]) -> None:
        tensors: list[torch.Tensor] = [item.tensor for item in batch]  # type: ignore[misc]
        smalls = [item.small for item in batch if item.small is not None]
        for item in batch:
            item.tensor = item.small = None
        if batch[0].seq > self.halt_after:  # stopping (Ctrl-C, --fail-fast): no network pass for nothing
            for item in batch:
                item.image = None
            return
        stacked = torch.stack(tensors)  # (B, 3, h, w)
        recognise = torch.stack(smalls) if smalls else None  # (B, 3, h', w')
        wanted = [list(self.targets) for _ in batch] if self.targets else None
        try:
            with self.device_lock:
                results = self.explainer.infer_classes(stacked, wanted, top=self.options.topk, recognise=recognise)
        except (AttnvizError, torch.cuda.OutOfMemoryError, MemoryError) as exc:  # those images fail, the run goes on
            reason = str(exc) if isinstance(exc, AttnvizError) else "out of memory (try --batch-size 1 or --workers 1)"
            for item in batch:
                item.image = None
                self.failed(item, f"{item.job.input}: {reason}")
            return
        for item, maps in zip(batch, results, strict=True):
            self.finish(item, maps)

    def finish(self, item: Item, maps: list[GridResult]) -> Item:
        """Draw and encode the maps of one image, and describe them."""
        assert item.image is not None
        if item.seq > self.halt_after:  # an earlier input failed under --fail-fast: nothing more gets written
            item.image = None
            return item
        try:
            first = maps[0]
            entries = [
                self.render_map(item, result, item.outputs[index] if item.outputs else None)
                for index, result in enumerate(maps)
            ]
            record: Record = {
                "input": item.job.input,
                "output": entries[0]["output"],
                "mode": self.mode.value,
                "encoder": self.explainer.encoder.name,
                "size": list(first.input_size),
                "classify_size": list(first.classify_size or first.input_size),
                "grid": list(first.grid),
                "target": entries[0]["target"],
                "topk": [p.to_json() for p in first.topk],
                "peak": entries[0]["peak"],
            }
            if "scores" in entries[0]:
                record["scores"] = entries[0]["scores"]
            if self.options.record_weights:
                record["weights"] = [round(float(w), 7) for w in first.weights.ravel()]
            if len(entries) > 1:
                record["maps"] = entries
            if item.frames > 1:
                record["frames"] = item.frames
                record["frame"] = 0
            item.record = record
            item.weights = first.weights
        except AttnvizError as exc:
            self.failed(item, str(exc))
        finally:
            item.image = None  # free the full-size picture as soon as it is drawn
        return item

    def render_map(self, item: Item, result: GridResult, output: Path | None) -> MapRecord:
        """One overlay, encoded and queued for its file (or kept for stdout); returns its JSON entry."""
        assert item.image is not None
        o = self.options
        explanation = self.explainer.draw(result, item.image.width, item.image.height, o.interpolation, o.smooth)
        pixels: np.ndarray | Image.Image = overlay_image(item.image, explanation.heatmap, o.colormap, o.alpha)
        if o.annotate:
            from attnviz.render.annotate import annotate, caption

            text = caption(result.target, self.mode.value)
            pixels = annotate(np.asarray(pixels), text, o.colormap)
        fmt, save_options = image_format(output) if output else suffix_format(self.suffix)
        try:
            data = encode_image(pixels, fmt, save_options)
        except (ValueError, OSError) as exc:  # e.g. WebP wider than 16383 px, JPEG over 65500 px
            raise OutputError(f"{output or STDOUT}: cannot encode as {fmt}: {exc}") from None
        entry: MapRecord = {
            "target": prediction_json(result.target),
            "output": str(output) if output else STDOUT,
            "peak": list(explanation.peak),
        }
        if output is None:
            item.data = data
            return entry
        if o.save_scores:
            scores_path = output.with_suffix(".npy")
            item.files.append((scores_path, result.weights.astype(np.float32)))
            entry["scores"] = str(scores_path)
        item.files.append((output, data))
        return entry
