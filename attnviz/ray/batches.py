"""The class Ray Data maps over batches: one explainer per actor, built inside it, and one record per row."""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from attnviz.batch.allocator import tune_allocator
from attnviz.batch.lanes import Lanes
from attnviz.batch.options import RunOptions
from attnviz.batch.plan import Item, tagged
from attnviz.errors import OutputError, UsageError
from attnviz.io.images import LoadedImage, decode_bytes, load_image, to_rgb, use_own_pixel_limit
from attnviz.io.inputs import Job, mirrored, output_for
from attnviz.io.outputs import write_bytes, write_npy
from attnviz.ray.records import to_table
from attnviz.record import Record, error_record

#: Torch threads per actor. Ray sets OMP_NUM_THREADS from an actor's CPUs (1 for 0.5); measured on 2 cores, two
#: actors of one thread each beat one actor of two threads, as attnviz's own lanes do (see README, Ray).
ACTOR_THREADS = 1


class _RowLanes(Lanes):
    """The local engine's lanes, fed from a row: file bytes, decoded pixels, or a path to read."""

    def __init__(self, options: RunOptions) -> None:
        super().__init__(options)
        self.sources: dict[int, Any] = {}  # seq -> bytes, an (H, W[, C]) array, or None to read the path

    def load(self, item: Item) -> LoadedImage:
        source = self.sources.pop(item.seq, None)
        name = item.job.input
        if isinstance(source, bytes | bytearray | memoryview):
            return decode_bytes(bytes(source), name, self.options.max_pixels)
        if isinstance(source, np.ndarray):  # `read_images` decoded it (without EXIF orientation)
            return LoadedImage(to_rgb(Image.fromarray(source)), name, "array")
        return load_image(name, self.options.max_pixels)


class ExplainBatches:
    """For `Dataset.map_batches(ExplainBatches, compute=ActorPoolStrategy(size=N), ...)`: Ray builds one per actor,
    so each actor loads the encoder once, in its own process (a model captured from the driver would be pickled
    into every task: Ray's documented anti-pattern, refused above 95 MiB).

    Rows come from `read_binary_files(..., include_paths=True)` (`bytes`, `path`: decoded by attnviz's own loader,
    with its EXIF, mode and decompression-bomb handling), `read_images(..., include_paths=True)` (`image`, `path`),
    or name files alone (`path`, read here). Each gives one record of `attnviz.ray.records.SCHEMA`; a file that
    cannot be read or explained gives a record with `error`, never a failed task.

    `output`: a folder where the overlays are written under the names `attnviz run` gives them, mirroring each
    path relative to `root` (else the whole path, its root removed). Files are replaced atomically, so a batch
    that Ray retries writes the same files again, never duplicates. `overlays=True` puts the encoded maps in the
    records too. Any other `RunOptions` field (`mode`, `size`, `topk`, `targets`, ...) by keyword, or `options`.
    In an actor, `threads` is its torch thread count (Ray would leave it at its CPU share, rounded up).
    """

    def __init__(
        self,
        output: str | None = None,
        root: str | None = None,
        *,
        overlays: bool = False,
        threads: int = ACTOR_THREADS,
        cwd: str | None = None,
        options: RunOptions | None = None,
        **settings: Any,
    ) -> None:
        if options is None:
            options = RunOptions(output=output, **settings)
        elif output is not None or settings:
            raise UsageError("give either options= or output= and settings, not both")
        if _in_actor():  # the actor's process is its own: tuned as the command line tunes its process
            if cwd is not None:  # the command line's rows name files as typed, relative to where it was started
                os.chdir(cwd)
            torch.set_num_threads(threads)
            tune_allocator()
            use_own_pixel_limit()
        self.lanes = _RowLanes(options)
        self.write = options.output is not None
        self.out_dir = Path(options.output or ".")
        self.root = _without_scheme(root) if root is not None else None
        self.overlays = overlays
        self.seq = 0

    def plan(self, name: str) -> list[Path]:
        """The outputs `attnviz run ROOT -o OUTPUT` would give this path."""
        relative = mirrored(os.path.relpath(name, self.root)) if self.root else mirrored(name)
        first = output_for(Job(name, relative), self.out_dir, self.lanes.mode.value, self.lanes.suffix)
        return [tagged(first, tag) for tag in self.lanes.map_tags]

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        if "path" not in batch:
            raise UsageError("rows need a 'path' column: read them with include_paths=True")
        items = []
        for i, path in enumerate(batch["path"]):
            name = str(path)
            planned = batch.get("outputs")
            outputs = [Path(str(p)) for p in planned[i]] if planned is not None else self.plan(name)
            item = Item(Job(name, PurePath(name)), outputs[0], outputs=outputs, seq=self.seq)
            self.seq += 1
            if self.lanes.options.skip_existing and all(p.exists() for p in outputs):  # with -k, every map
                item.skip()
            else:
                source = batch["bytes"][i] if "bytes" in batch else batch["image"][i] if "image" in batch else None
                self.lanes.sources[item.seq] = source
            items.append(item)
        size = self.lanes.options.batch_size
        for start in range(0, len(items), size):
            self.lanes.process(items[start : start + size])
        return to_table([self.record(item) for item in items])

    def record(self, item: Item) -> Record:
        if item.error is None and not item.skipped and self.write:
            try:
                for path, content in item.files:  # scores first, the overlay last: its presence means done
                    if isinstance(content, np.ndarray):
                        write_npy(path, content, overwrite=True)
                    else:
                        write_bytes(path, content, overwrite=True)
            except OutputError as exc:
                item.error = str(exc)
        if item.error is not None:
            return error_record(item.job.input, item.error)
        record: Record = {**(item.record or {})}
        if item.weights is not None:  # float32, row-major: the audit's contract
            record["weights"] = np.ascontiguousarray(item.weights, dtype=np.float32).reshape(-1)  # type: ignore[typeddict-item]
        if self.overlays and not item.skipped:
            record["overlays"] = [content for _, content in item.files if isinstance(content, bytes)]
        return record


def _in_actor() -> bool:
    """Whether this is a Ray actor's process; anywhere else (a caller's own process) nothing global is changed."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def _without_scheme(root: str) -> str:
    """`read_binary_files` gives `bucket/key` for `s3://bucket/key` and absolute paths for local ones."""
    return root.split("://", 1)[1] if "://" in root else os.path.abspath(root)
