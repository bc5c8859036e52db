"""Which files to process and where each result goes: arguments, folders and stdin become a stream of jobs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO

from attnviz.io.images import is_image_name
from attnviz.io.outputs import default_output_name
from attnviz.options import Mode

STDIN = "-"
NUL_HINT = "paths on stdin are NUL-separated (first: {first}); give -0 (--null) to read find -print0 output"


@dataclass(frozen=True)
class Job:
    """One input and the path, relative to the output folder, that its result mirrors."""

    input: str
    relative: PurePath
    error: str | None = None  # known to fail before anything is read


def read_paths(stream: BinaryIO, null_separated: bool = False) -> Iterator[str]:
    """Paths from a byte stream, one per line (or NUL-separated), lazily, so a pipeline starts at once.

    Bytes that are not UTF-8 survive as surrogate escapes, the way `os` represents such file names.
    """
    separator = b"\0" if null_separated else b"\n"
    pending = b""
    while chunk := stream.read1(65536):  # type: ignore[attr-defined]
        pending += chunk
        *complete, pending = pending.split(separator)
        yield from _decode(complete, null_separated)
    yield from _decode([pending], null_separated)


def _decode(raws: list[bytes], null_separated: bool) -> Iterator[str]:
    for raw in raws:
        name = raw if null_separated else raw.rstrip(b"\r")
        if name:
            yield os.fsdecode(name)


#: attnviz's own outputs (`NAME.attn-MODE.png`, `NAME.attn-MODE.top2.png`, `NAME.compare.png`): a folder run twice
#: in place must not draw maps of its maps.
OWN_OUTPUT = re.compile(
    rf"\.attn-({'|'.join(re.escape(m.value) for m in Mode)})(\.top\d+|\.\d+)?\.(png|jpg|webp)$|\.compare\.png$"
)
SKIPPED = "hidden files and attnviz's own outputs (NAME.attn-MODE.png, audit folders) are skipped"
#: What marks a folder as an audit's output (`attnviz audit -o DIR`: the settings it keeps, its journal while it runs,
#: or its records beside its report): its thumbnails are not photos of the dataset, even when DIR sits inside the
#: audited folder. A folder with a records.jsonl alone is a user's, and is scanned.
AUDIT_SETTINGS, AUDIT_JOURNAL = ".settings.json", ".journal.jsonl"
AUDIT_MARKS = (AUDIT_SETTINGS, AUDIT_JOURNAL)
#: An audit folder's own picture folders, left out when the audit folder is the one scanned (`audit . -o .`).
AUDIT_PICTURES = ("thumbs", "strategies", "overlays", "data")


def walk_folder(folder: str) -> Iterator[str]:
    """Image files under `folder`, recursively, in sorted order; symbolic links to folders are not followed. Hidden
    files and folders (`.name`, macOS's `._photo.jpg`) and attnviz's own outputs (maps, audit folders) are left out."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        own = AUDIT_PICTURES if _is_audit(root) else ()
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and d not in own and not _is_audit(os.path.join(root, d))
        )
        for name in sorted(files):
            if is_image_name(Path(name)) and not name.startswith(".") and not OWN_OUTPUT.search(name):
                yield os.path.join(root, name)


def _is_audit(folder: str) -> bool:
    def has(name: str) -> bool:
        return os.path.isfile(os.path.join(folder, name))

    return any(has(mark) for mark in AUDIT_MARKS) or (has("records.jsonl") and has("report.html"))


def mirrored(path: str) -> PurePath:
    """The part of `path` safe to recreate under an output folder: no root, no drive, no `..`, no `.`."""
    pure = PurePath(path)
    parts = [p for p in pure.parts if p not in (pure.anchor, "", ".", "..")]
    return PurePath(*parts) if parts else PurePath("image")


def expand(arguments: Iterable[str], stdin: BinaryIO | None = None, null_separated: bool = False) -> Iterator[Job]:
    """Jobs in argument order: files as given, folders walked, `-` read from stdin.

    Outputs mirror a folder's files relative to that folder and stdin's paths as given (root and `..` removed); a
    file argument's output takes its name alone.
    """
    for argument in arguments:
        if argument == STDIN:
            if stdin is None:
                continue
            for path in read_paths(stdin, null_separated):
                if "\0" in path:  # `find -print0` without -0: all the paths arrive as one line
                    first = path.split("\0", 1)[0]
                    yield Job(first, PurePath("image"), error=NUL_HINT.format(first=first))
                else:
                    yield Job(path, mirrored(path))
        elif os.path.isdir(argument):
            found = False
            for path in walk_folder(argument):
                found = True
                yield Job(path, mirrored(os.path.relpath(path, argument)))
            if not found:
                yield Job(
                    argument, mirrored(argument), error=f"{argument}: found no image files in this folder ({SKIPPED})"
                )
        else:  # a file named on the command line is named by itself in the output folder, as `cp a/x b/y dest/`
            yield Job(argument, PurePath(mirrored(argument).name))


def output_for(job: Job, out_dir: Path, mode: str, suffix: str) -> Path:
    """`out_dir/<mirrored folders>/<stem>.attn-<mode><suffix>`, always inside `out_dir`."""
    return out_dir / job.relative.parent / default_output_name(job.relative.name, mode, suffix)
