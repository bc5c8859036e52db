"""Where each input's maps go, decided before anything is decoded: output names, collisions, skips, refusals."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from attnviz.batch.options import STDOUT, RunOptions
from attnviz.errors import OutputError, UsageError
from attnviz.io.inputs import STDIN, Job, expand, output_for
from attnviz.io.outputs import check_target, image_format
from attnviz.record import Record

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


@dataclass
class Item:
    """One input on its way through the stages; `record` is set once its outcome is known."""

    job: Job
    output: Path | None  # the first map's output; None for stdout
    outputs: list[Path] = field(default_factory=list)  # one per map
    seq: int = 0  # position in the input order
    image: Image.Image | None = None
    frames: int = 1
    record: Record | None = None
    weights: np.ndarray | None = field(default=None, repr=False)  # (rows, cols): the first map's grid weights
    data: bytes | None = None  # image bytes destined for stdout
    files: list[tuple[Path, bytes | np.ndarray]] = field(default_factory=list, repr=False)  # written on emission
    error: str | None = None
    skipped: bool = False
    redo: bool = False  # --skip-existing, and only some of its maps exist (a run stopped mid-input): replace them
    tensor: torch.Tensor | None = field(default=None, repr=False)  # (3, h, w) for the map
    small: torch.Tensor | None = field(default=None, repr=False)  # (3, h', w') for the classes, when two passes

    def skip(self) -> Item:
        """Its maps exist (--skip-existing): nothing is done, and its record says so."""
        self.skipped = True
        self.record = {"input": self.job.input, "output": str(self.output), "skipped": True}
        return self


def failed(item: Item, message: str) -> Item:
    """The plain way to fail an input (the lanes' own also stops a --fail-fast run)."""
    item.error = message
    return item


def tagged(path: Path, tag: str) -> Path:
    """`maps/cat.attn-dot.png` + `.top2` -> `maps/cat.attn-dot.top2.png`."""
    return path.with_name(path.stem + tag + path.suffix) if tag else path


def names_a_file(output: str) -> bool:
    """Whether `-o` names one image file: it has an extension and is not an existing folder or written as one
    (`maps/`). A name without an extension is a folder. An extension that is no image format is refused."""
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return False
    if not Path(output).suffix:
        if os.path.exists(output):  # `-o notes`, a file: as a folder, every write would fail with "File exists"
            raise UsageError(
                f"-o {output}: exists and is not a folder; name a new folder, or a file ending in .png, .jpg or .webp"
            )
        return False
    image_format(output)  # .gif, .txt: refused, naming the formats
    return True


def check_output(arguments: list[str], options: RunOptions) -> bool:
    """Refuses an `-o` that cannot take these inputs, before any network is loaded; returns whether this is the
    single-image case."""
    single = len(arguments) == 1 and arguments[0] != STDIN and not os.path.isdir(arguments[0])
    output = options.output
    if output == STDOUT:
        if not single:
            raise UsageError("-o - (image to stdout) needs exactly one input image")
        if options.json:
            raise UsageError("-o - and --json both want stdout; write the image to a file instead")
        if options.save_scores:
            raise UsageError("--save-scores needs an output file beside which to save, not -o -")
    elif not single and output and Path(output).is_file():
        raise UsageError(f"-o {output}: several inputs need an output folder, not a file")
    elif output and names_a_file(output) and not single:
        raise UsageError(
            f"-o {output}: several inputs need an output folder; give a name without an image extension, or one input"
        )
    return single


class OutputPlan:
    """Turns arguments into jobs and each job into its output paths, one claim per path."""

    def __init__(
        self, options: RunOptions, mode: str, map_tags: list[str], fail: Callable[[Item, str], Item] = failed
    ) -> None:
        self.options = options
        self.mode = mode
        self.map_tags = map_tags
        self.fail = fail
        self.suffix = "." + options.format.lower().lstrip(".")
        self.claimed: dict[Path, str] = {}

    def jobs(self, arguments: list[str], stdin: BinaryIO | None) -> tuple[Iterator[Job], int | None, bool]:
        """Jobs, their count when known up front, and whether this is the single-image case."""
        self.claimed = {}  # a second run may write the same outputs again (with --overwrite)
        single = check_output(arguments, self.options)
        if self.options.output == STDOUT and len(self.map_tags) > 1:
            raise UsageError("several maps per image (--topk, several --target) need files, not -o -")
        if STDIN in arguments:
            return expand(arguments, stdin, self.options.null_separated), None, single
        jobs = list(expand(arguments))
        return iter(jobs), len(jobs), single

    def output_path(self, job: Job, single: bool) -> Path | None:
        out = self.options.output
        if single:
            if out == STDOUT:
                return None
            if out and names_a_file(out):  # else a folder, made if need be: `-o maps`, `-o maps/`
                return Path(out)
            return output_for(Job(job.input, Path(job.relative.name)), Path(out or "."), self.mode, self.suffix)
        return output_for(job, Path(out or "."), self.mode, self.suffix)

    def admit(self, job: Job, single: bool, seq: int) -> Item:
        """Decide before decoding whether the job runs, is skipped, or fails on its output path."""
        item = Item(job, self.output_path(job, single), seq=seq)
        if job.error is not None:
            return self.fail(item, job.error)
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
            return self.fail(item, f"{job.input}: its output {item.output} is also the output of {earlier}")
        self.claimed[item.output] = job.input
        item.outputs = [tagged(item.output, tag) for tag in self.map_tags]
        item.output = item.outputs[0]
        if self.options.skip_existing:
            present = [output.exists() for output in item.outputs]
            if all(present):  # with -k, every map
                return item.skip()
            item.redo = any(present)
        try:
            for output in item.outputs:
                check_target(output, inputs=(job.input,), overwrite=self.options.overwrite or item.redo)
        except OutputError as exc:
            self.fail(item, str(exc))
        return item
