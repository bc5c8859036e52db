"""`attnviz run` over any number of inputs: decode, forward, render and encode on parallel lanes, in input order.

Each lane (a worker thread) takes a few consecutive inputs and carries them through every stage: decode, network,
scores, drawing, PNG encoding. On a CPU each lane runs the network with its share of the cores (one core each on a
2-core machine), so no stage waits on another and no thread pool's barrier is held up by a neighbour: measured on
2 cores, 14.5 images/s against 11.5 for one network thread fed by decode and render pools. The calling thread
only plans, writes the finished files and emits results, in input order. At most two units of work per lane are
in flight, so memory stays flat however many images go through.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import BinaryIO, TextIO

import numpy as np
import torch
from PIL import Image

from attnviz import render
from attnviz.encoders import create_encoder
from attnviz.errors import AttnvizError, OutputError, UsageError
from attnviz.images import DEFAULT_MAX_PIXELS, load_image
from attnviz.inputs import STDIN, Job, expand, output_for
from attnviz.outputs import (
    check_target,
    encode_image,
    image_format,
    suffix_format,
    write_bytes,
    write_npy,
)
from attnviz.pipeline import Explainer, GridResult, Query, pick_device
from attnviz.progress import Progress
from attnviz.scorers import Mode

STDOUT = "-"


@dataclass(frozen=True)
class RunOptions:
    mode: Mode | None = None  # None: the --head file's mode, else concat
    encoder: str = "efficientnet_lite0"
    weights: str | None = None
    layer: str | None = None
    head: str | None = None
    query: Query = Query.auto
    size: int = 448
    classify_size: int | None = None  # recognition pass; None: the encoder's trained size
    targets: tuple[str, ...] = ()
    topk: int = 1  # maps per image: its top-k classes (when no targets are given)
    interpolation: render.Interpolation = render.Interpolation.bilinear
    smooth: float = render.DEFAULT_SMOOTH  # Gaussian sigma of the drawn map, share of the shorter side
    colormap: str = render.DEFAULT_COLORMAP
    alpha: float = render.DEFAULT_ALPHA
    annotate: bool = False  # a caption band under each overlay: class, probability, mode, colour bar
    output: str | None = None
    format: str = "png"
    overwrite: bool = False
    skip_existing: bool = False
    json: bool = False
    save_scores: bool = False
    quiet: bool = False
    fail_fast: bool = False
    null_separated: bool = False
    batch_size: int = 1
    workers: int | None = None  # lanes; None: one per core, at most MAX_LANES
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Summary:
    written: int = 0
    skipped: int = 0
    failed: int = 0

    def line(self) -> str:
        return f"attnviz: {self.written} written, {self.skipped} skipped, {self.failed} failed"


@dataclass
class Item:
    """One input on its way through the stages; `record` is set once its outcome is known."""

    job: Job
    output: Path | None  # the first map's output; None for stdout
    outputs: list[Path] = field(default_factory=list)  # one per map
    seq: int = 0  # position in the input order
    image: Image.Image | None = None
    frames: int = 1
    record: dict[str, object] | None = None
    data: bytes | None = None  # image bytes destined for stdout
    files: list[tuple[Path, bytes | np.ndarray]] = field(default_factory=list, repr=False)  # written on emission
    error: str | None = None
    skipped: bool = False
    tensor: torch.Tensor | None = field(default=None, repr=False)  # (3, h, w) for the map
    small: torch.Tensor | None = field(default=None, repr=False)  # (3, h', w') for the classes, when two passes


#: More lanes than this only multiply memory: past 4, giving each lane several cores scales as well.
MAX_LANES = 4


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def tagged(path: Path, tag: str) -> Path:
    """`maps/cat.attn-dot.png` + `.top2` -> `maps/cat.attn-dot.top2.png`."""
    return path.with_name(path.stem + tag + path.suffix) if tag else path


def one_line(message: str) -> str:
    return message.replace("\r", "\\r").replace("\n", "\\n")


class Runner:
    def __init__(self, options: RunOptions, stdout: BinaryIO, stderr: TextIO) -> None:
        self.options = options
        self.stdout = stdout
        self.stderr = stderr
        self.summary = Summary()
        self.suffix = "." + options.format.lower().lstrip(".")
        suffix_format(self.suffix)  # validates the format before any work
        render.colormap_lut(options.colormap)  # validates the colormap
        if not 0.0 <= options.alpha <= 1.0:
            raise UsageError(f"--alpha must be between 0 and 1, got {options.alpha}")
        if options.batch_size < 1 or (options.workers is not None and options.workers < 1) or options.size < 1:
            raise UsageError("--batch-size, --workers and --size must be at least 1")
        if options.topk < 1:
            raise UsageError("--topk must be at least 1")
        if options.targets and options.topk > 1:
            raise UsageError("give either --target (one or more) or --topk, not both")
        if options.skip_existing and options.overwrite:
            raise UsageError("give either --skip-existing (keep outputs) or --overwrite (replace them), not both")
        device = pick_device(options.device)
        # MPS aborts when two threads use it at once (pytorch#197805): there the network runs one lane at a time
        self.lanes = options.workers or {"cpu": min(cpu_count(), MAX_LANES), "mps": 1}.get(device, 2)
        self.device_lock: AbstractContextManager[object] = threading.Lock() if device == "mps" else nullcontext()
        encoder = create_encoder(options.encoder, options.weights, options.layer)
        self.explainer = Explainer(
            encoder,
            options.mode,
            options.size,
            device=device,
            query=options.query,
            classify_size=options.classify_size,
            head=options.head,
        )
        self.mode = self.explainer.mode
        classes = len(encoder.labels)
        if options.topk > classes:
            raise UsageError(f"--topk {options.topk}: encoder {encoder.name} has only {classes} classes")
        indices = [self.explainer.target_index(t) for t in options.targets]
        self.targets = list(dict.fromkeys(i for i in indices if i is not None))  # `-t cup -t 968` is one map
        # one output per map: the class index in the name for --target, the rank for --topk
        if len(self.targets) > 1:
            self.map_tags = [f".{t}" for t in self.targets]
        elif options.topk > 1:
            self.map_tags = [f".top{r}" for r in range(1, options.topk + 1)]
        else:
            self.map_tags = [""]
        self.claimed: dict[Path, str] = {}
        self.halt_after = float("inf")  # with --fail-fast: sequence number of the first known failure
        self.writing = False  # the main thread is writing an input's files: Ctrl-C waits until they are done
        self.interrupt_pending = False

    def failed(self, item: Item, message: str) -> Item:
        """Record a failure; with --fail-fast nothing after it in input order gets written any more."""
        item.error = message
        if self.options.fail_fast:
            self.halt_after = min(self.halt_after, item.seq)
        return item

    # -- planning -------------------------------------------------------------------------------------------

    def plan(self, arguments: list[str], stdin: BinaryIO | None) -> tuple[Iterator[Job], int | None, bool]:
        """Jobs, their count when known up front, and whether this is the single-image case."""
        single = len(arguments) == 1 and arguments[0] != STDIN and not os.path.isdir(arguments[0])
        if self.options.output == STDOUT:
            if not single:
                raise UsageError("-o - (image to stdout) needs exactly one input image")
            if self.options.json:
                raise UsageError("-o - and --json both want stdout; write the image to a file instead")
            if self.options.save_scores:
                raise UsageError("--save-scores needs an output file beside which to save, not -o -")
            if len(self.map_tags) > 1:
                raise UsageError("several maps per image (--topk, several --target) need files, not -o -")
        elif not single and self.options.output and Path(self.options.output).is_file():
            raise UsageError(f"-o {self.options.output}: several inputs need an output folder, not a file")
        elif not single and self.options.output and _names_a_file(self.options.output):
            raise UsageError(
                f"-o {self.options.output}: several inputs need an output folder; "
                "give a name without an image extension, or one input"
            )
        if STDIN in arguments:
            return expand(arguments, stdin, self.options.null_separated), None, single
        jobs = list(expand(arguments))
        return iter(jobs), len(jobs), single

    def output_path(self, job: Job, single: bool) -> Path | None:
        out = self.options.output
        if single:
            if out == STDOUT:
                return None
            if out and _names_a_file(out):  # else a folder, made if need be: `-o maps`, `-o maps/`
                return Path(out)
            return output_for(Job(job.input, Path(job.relative.name)), Path(out or "."), self.mode.value, self.suffix)
        return output_for(job, Path(out or "."), self.mode.value, self.suffix)

    # -- stages ---------------------------------------------------------------------------------------------

    def admit(self, job: Job, single: bool, seq: int) -> Item:
        """Decide before decoding whether the job runs, is skipped, or fails on its output path."""
        item = Item(job, self.output_path(job, single), seq=seq)
        if job.error is not None:
            return self.failed(item, job.error)
        if item.output is None:
            return item
        earlier = self.claimed.get(item.output)
        if earlier is not None and Path(earlier).name != Path(job.input).name:
            # photo.jpg and photo.png side by side: the later one keeps its extension in the name
            item.output = item.output.with_name(
                item.output.name.replace(".attn-", Path(job.input).suffix + ".attn-", 1)
            )
            earlier = self.claimed.get(item.output)
        if earlier is not None:
            return self.failed(item, f"{job.input}: its output {item.output} is also the output of {earlier}")
        self.claimed[item.output] = job.input
        item.outputs = [tagged(item.output, tag) for tag in self.map_tags]
        item.output = item.outputs[0]
        if self.options.skip_existing and item.outputs[-1].exists():  # the last written means all are done
            item.skipped = True
            item.record = {"input": job.input, "output": str(item.output), "skipped": True}
            return item
        try:
            for output in item.outputs:
                check_target(output, inputs=(job.input,), overwrite=self.options.overwrite)
        except OutputError as exc:
            self.failed(item, str(exc))
        return item

    def decode(self, item: Item) -> Item:
        try:
            loaded = load_image(item.job.input, self.options.max_pixels)
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
        pictures, then draw and encode every map. Files are written later, in input order, by `emit`."""
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
            entries = []
            for index, result in enumerate(maps):
                output = item.outputs[index] if item.outputs else None
                entries.append(self.render_map(item, result, output))
            record: dict[str, object] = {
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
            if len(entries) > 1:
                record["maps"] = entries
            if item.frames > 1:
                record["frames"] = item.frames
                record["frame"] = 0
            item.record = record
        except AttnvizError as exc:
            self.failed(item, str(exc))
        finally:
            item.image = None  # free the full-size picture as soon as it is drawn
        return item

    def render_map(self, item: Item, result: GridResult, output: Path | None) -> dict[str, object]:
        """One overlay, encoded and queued for its file (or kept for stdout); returns its JSON entry."""
        assert item.image is not None
        o = self.options
        explanation = self.explainer.draw(result, item.image.width, item.image.height, o.interpolation, o.smooth)
        pixels = render.overlay(np.asarray(item.image), explanation.heatmap, o.colormap, o.alpha)
        if o.annotate:
            from attnviz.annotate import annotate, caption

            text = caption(result.target.label, result.target.prob, self.mode.value)
            pixels = annotate(pixels, text, o.colormap)
        fmt, save_options = image_format(output) if output else suffix_format(self.suffix)
        data = encode_image(pixels, fmt, save_options)
        entry: dict[str, object] = {
            "target": result.target.to_json(),
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

    def write_files(self, item: Item) -> None:
        """Scores first and the overlay last, so an overlay's presence means its input is done (--skip-existing).

        Ctrl-C during these writes takes effect once they are done: an input is never left with its scores but
        without its overlay, which a resumed run would trip over.
        """
        self.writing = True
        try:
            for path, content in item.files:
                if isinstance(content, np.ndarray):
                    write_npy(path, content, overwrite=self.options.overwrite)
                else:
                    write_bytes(path, content, overwrite=self.options.overwrite)
        except OutputError as exc:
            self.failed(item, str(exc))
        finally:
            item.files = []
            self.writing = False

    @contextmanager
    def deferred_interrupts(self) -> Iterator[None]:
        """While files are being written, the first Ctrl-C is held back until they are done (a second one is not)."""
        # signals reach the main thread only; an ignored SIGINT (a background job) or an embedder's handler stays
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return

        def on_interrupt(signum: int, frame: FrameType | None) -> None:
            if self.writing and not self.interrupt_pending:
                self.interrupt_pending = True
                return
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    # -- driver ---------------------------------------------------------------------------------------------

    def run(self, arguments: list[str], stdin: BinaryIO | None) -> int:
        jobs, total, single = self.plan(arguments, stdin)
        self.claimed = {}  # a second run of the same runner may write the same outputs again (with --overwrite)
        self.summary = Summary()
        self.halt_after = float("inf")
        self.interrupt_pending = False
        progress = Progress(self.stderr, total, enabled=self.stderr.isatty() and not self.options.quiet and not single)
        pending: deque[Future[list[Item]]] = deque()
        interrupted = False
        chunk: list[Item] = []
        with self.deferred_interrupts(), self.lane_threads(), ThreadPoolExecutor(self.lanes, "attnviz-lane") as lanes:
            try:
                stopped = False
                seq = 0
                for job in arrivals(jobs, streamed=total is None):
                    if job is not None:
                        chunk.append(self.admit(job, single, seq))
                        seq += 1
                        if len(chunk) < self.options.batch_size:
                            continue
                    if chunk:  # full, or the next path is slow to come: start on what there is
                        pending.append(lanes.submit(self.process, chunk))
                        chunk = []
                    while pending and (len(pending) >= 2 * self.lanes or pending[0].done()) and not stopped:
                        stopped = self.emit_all(pending.popleft(), progress)
                    if stopped:
                        break
                if chunk and not stopped:
                    pending.append(lanes.submit(self.process, chunk))
                while pending and not stopped:
                    stopped = self.emit_all(pending.popleft(), progress)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                self.halt_after = -1  # lanes still busy stop drawing; nothing more is written
                for future in pending:
                    future.cancel()
        progress.clear()
        if interrupted:
            self.message("interrupted; every file written so far is complete")
        if not single and not self.options.quiet:
            self.stderr.write(self.summary.line() + "\n")
        if interrupted:
            return 130
        return 1 if self.summary.failed else 0

    @contextmanager
    def lane_threads(self) -> Iterator[None]:
        """Each lane gets an equal share of the cores for its torch work (the network on a CPU; resizing always)."""
        before = torch.get_num_threads()
        torch.set_num_threads(max(1, cpu_count() // self.lanes))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def emit_all(self, pending: Future[list[Item]], progress: Progress) -> bool:
        """Write and report a finished unit of work; returns True to stop (--fail-fast)."""
        for item in pending.result():
            stop = self.emit(item, progress)
            if self.interrupt_pending:  # a Ctrl-C that came while this input's files were written
                raise KeyboardInterrupt
            if stop:
                return True
        return False

    def emit(self, item: Item, progress: Progress) -> bool:
        if item.files and item.error is None:
            self.write_files(item)
        progress.advance()
        if item.error is not None:
            self.summary.failed += 1
            progress.clear()
            self.message(item.error)
            if self.options.json:
                self.write_json({"input": item.job.input, "error": item.error})
            return self.options.fail_fast
        if item.skipped:
            self.summary.skipped += 1
        else:
            self.summary.written += 1
        if item.data is not None:
            self.stdout.write(item.data)
            self.stdout.flush()
        elif self.options.json and item.record is not None:
            self.write_json(item.record)
        elif item.record is not None and not self.options.quiet and progress.total == 1:
            maps = item.record.get("maps", [item.record])
            for entry in maps if isinstance(maps, list) else []:
                target = entry["target"]
                self.stderr.write(
                    f"wrote {entry['output']}  ({target['label']}, p={target['prob']:.3f}, peak at {entry['peak']})\n"
                )
        return False

    def message(self, text: str) -> None:
        self.stderr.write(f"attnviz: error: {one_line(text)}\n")
        self.stderr.flush()

    def write_json(self, record: dict[str, object]) -> None:
        self.stdout.write(json.dumps(record).encode() + b"\n")
        self.stdout.flush()


def _names_a_file(output: str) -> bool:
    """Whether `-o` names one image file: it has an extension and is not an existing folder or written as one
    (`maps/`). A name without an extension is a folder. An extension that is no image format is refused."""
    if output.endswith(("/", os.sep)) or Path(output).is_dir() or not Path(output).suffix:
        return False
    image_format(output)  # .gif, .txt: refused, naming the formats
    return True


def _shapes(item: Item) -> tuple[object, object]:
    """Inputs batch together only when both passes see the same shapes."""
    return (
        None if item.tensor is None else item.tensor.shape,
        None if item.small is None else item.small.shape,
    )


#: How long the driver waits for the next path from a pipe before it starts on, and reports, what it has.
STREAM_PATIENCE_S = 0.2


def arrivals(jobs: Iterator[Job], streamed: bool) -> Iterator[Job | None]:
    """The jobs in order; from a pipe, also None whenever the next path is slow to come.

    A pipe may deliver paths as they appear (`inotifywait -m ... | attnviz run -`); reading it on a thread of its
    own lets the driver start work and print results meanwhile instead of waiting for the next line.
    """
    if not streamed:
        yield from jobs
        return
    inbox: queue.Queue[Job | BaseException | None] = queue.Queue(maxsize=256)  # None: the end

    def pump() -> None:
        try:
            for job in jobs:
                inbox.put(job)
        except BaseException as exc:  # re-raised on the driver's thread
            inbox.put(exc)
        inbox.put(None)

    threading.Thread(target=pump, name="attnviz-stdin", daemon=True).start()
    while True:
        try:
            arrived = inbox.get(timeout=STREAM_PATIENCE_S)
        except queue.Empty:
            yield None
            continue
        if isinstance(arrived, BaseException):
            raise arrived
        if arrived is None:
            return
        yield arrived


def run(arguments: list[str], options: RunOptions, stdin: BinaryIO | None = None) -> int:
    """Process `arguments` (files, folders, `-` for paths on stdin); returns the exit status."""
    stdout = sys.stdout.buffer
    runner = Runner(options, stdout, sys.stderr)
    return runner.run(arguments, stdin if stdin is not None else sys.stdin.buffer)


__all__ = ["RunOptions", "Runner", "Summary", "run"]
