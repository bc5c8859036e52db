"""The pipeline for one picture: picture -> encoder -> class query -> scorer -> grid weights -> drawn map."""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from attnviz import render
from attnviz.attention.cams import ClassActivation
from attnviz.attention.dispatch import cam_query, mode_scorer, torch_only
from attnviz.attention.queries import class_queries
from attnviz.attention.relevance import attention_maps
from attnviz.attention.scorers import Scorer
from attnviz.attention.transformer import Recorded, TransformerAttention
from attnviz.errors import UsageError
from attnviz.io.pictures import Picture, Pictures, Target, Targets
from attnviz.models.base import IMAGENET_MEAN, IMAGENET_STD, Encoder
from attnviz.models.devices import pick_device
from attnviz.models.labels import resolve_target
from attnviz.models.registry import cached_encoder
from attnviz.models.runtime import Engine, choose_engine
from attnviz.options import (
    ATTENTION_MODES,
    CAM_MODES,
    CLASS_FREE_MODES,
    DEFAULT_ENCODER,
    DEFAULT_MODE,
    DEFAULT_SIZE,
    DEFAULT_TOPK,
    Backend,
    Mode,
    Query,
    check_choices,
    check_targets,
)
from attnviz.results import Explanation, GridResult, Prediction

_BILINEAR = render.Interpolation.bilinear
#: Fewest grid cells along the shorter side of the network input.
MIN_CELLS = 2


class Explainer:
    """Holds one encoder and its scorer, so a batch of images pays for loading them once.

    `encoder` is a registry name (with `weights`, a local state dict) or an `Encoder`; `head` is a file from
    `attnviz fit`, whose mode is used when `mode` is not given. `device="auto"` picks CUDA, then MPS, then the CPU,
    as the command line does. Named encoders are cached per name and weights; a non-CPU device gets its own copy,
    so one explainer never moves another's network.

    `backend` runs the forward pass under torch (the default here) or an inference runtime ("onnxruntime",
    "openvino", or "auto" as the command line does; see `models/runtime.py`) with `threads` per session (0: the
    runtime's default); `notify` gets the one line said when an encoder is first exported (default: stderr).
    """

    def __init__(
        self,
        encoder: str | Encoder | nn.Module = DEFAULT_ENCODER,
        mode: Mode | str | None = None,
        size: int = DEFAULT_SIZE,
        topk: int = DEFAULT_TOPK,
        device: str | torch.device = "auto",
        query: Query | str = Query.auto,
        scorer: Scorer | None = None,
        classify_size: int | None = None,
        *,
        weights: str | None = None,
        head: str | os.PathLike[str] | None = None,
        layer: str | None = None,
        labels: Sequence[str] | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        model: nn.Module | None = None,
        backend: Backend | str = Backend.torch,
        threads: int = 0,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        mode, query, backend = check_choices(mode, query, backend, topk, {"size": size, "classify_size": classify_size})
        self.device = torch.device(pick_device(str(device)))
        if model is not None:  # `Explainer(model=my_net, layer=..., labels=..., mean=..., std=...)`
            encoder = model
        if isinstance(encoder, str):
            encoder = cached_encoder(encoder, weights, layer, tuple(labels) if labels is not None else None)
            if self.device.type != "cpu":
                encoder = copy.deepcopy(encoder)
        elif not isinstance(encoder, (Encoder, nn.Module)):
            raise UsageError(f"encoder must be a name, an Encoder or a torch module, not {type(encoder).__name__}")
        elif not isinstance(encoder, Encoder):  # the user's own module: wrapped, never changed
            from attnviz.models.generic import wrap_module

            encoder = wrap_module(encoder, layer=layer, labels=labels, mean=mean, std=std)
        elif weights is not None or layer is not None or labels is not None:
            raise UsageError(
                "weights=, layer= and labels= apply to an encoder given by name or as a module; an Encoder object "
                "is used as it is (create_encoder(name, weights, layer, labels=...) makes one)"
            )
        self.encoder = encoder
        if head is not None:
            from attnviz.attention.heads import head_mode, load_head

            fitted = head_mode(head)
            if mode is not None and Mode(mode) is not fitted:
                raise UsageError(f"{os.fspath(head)}: this head is for --mode {fitted.value}, not {Mode(mode).value}")
            mode, scorer = fitted, load_head(head, self.encoder, fitted)
        self.mode = Mode(mode) if mode is not None else DEFAULT_MODE
        self.size = size
        #: Shorter side of the pass that ranks the classes: the encoder's trained scale unless told otherwise.
        #: A network recognises best at the scale it was trained at, and draws a finer map at a larger one.
        self.classify_size = classify_size or self.encoder.trained_size
        if self.encoder.headless:  # a backbone ranks no classes: its one pass is the map's
            self.classify_size = size
        stride = self.encoder.stride
        for option, value in (("--size", size), ("--classify-size", self.classify_size)):
            if value < MIN_CELLS * stride:  # a 1-cell grid has no "where": the aspect ratio would be lost too
                raise UsageError(
                    f"{option} {value} is under {MIN_CELLS} cells of encoder {self.encoder.name}'s stride {stride}; "
                    f"use at least {MIN_CELLS * stride}"
                )
        #: Predictions reported per image: none for a backbone, which has no classes.
        self.topk = 0 if self.encoder.headless else max(1, min(topk, len(self.encoder.labels)))
        if self.encoder.headless and self.mode not in CLASS_FREE_MODES:
            raise UsageError(
                f"encoder {self.encoder.name} has no classifier (a backbone without a head), so --mode "
                f"{self.mode.value} has no class to explain; a backbone draws --mode cls or --mode rollout"
            )
        self.encoder.to(self.device)
        #: The transformer's own attention (`cls`, `rollout`, ...) replaces the scorer in those modes.
        self.attention: TransformerAttention | None = None
        self.scorer: Scorer | None = None
        #: A class activation map (`gradcam`, ...: attention/cams.py) replaces the scorer in those modes.
        self.cam: ClassActivation | None = None
        self.query = Query(query)
        if self.mode in ATTENTION_MODES:
            self.attention = TransformerAttention(self.encoder, self.mode, self.encoder.name)
            self.query = Query.classifier  # no class query: the attention's own gradients, where any, are taken
        elif self.mode in CAM_MODES:  # the query says whether the pass keeps the features' gradient
            self.cam, self.query = ClassActivation(self.encoder, self.mode), cam_query(self.mode)
        else:
            self.scorer, self.query = mode_scorer(self.encoder, self.mode, self.query, scorer, self.device)
        self.engine, self.backend_note = self._engine(Backend(backend), threads, notify or _to_stderr)

    def _engine(self, backend: Backend, threads: int, notify: Callable[[str], None]) -> tuple[Engine | None, str]:
        """An inference runtime for the forward pass, or None for torch, and why."""
        why = torch_only(self.mode)
        if why is None:
            query = self.query is Query.classifier
            return choose_engine(
                self.encoder, backend, classifier_query=query, device=self.device.type, threads=threads, notify=notify
            )
        if backend not in (Backend.torch, Backend.auto):
            raise UsageError(f"--mode {self.mode.value} {why}: use --backend torch")
        return None, f"torch: --mode {self.mode.value} {why}"

    def target_index(self, target: str | int | None) -> int | None:
        if target is not None and self.encoder.headless:
            raise UsageError(f"--target {target}: encoder {self.encoder.name} has no classifier, so no classes")
        return None if target is None else resolve_target(target, self.encoder.labels)

    def check_targets(self, targets: Sequence[str | int], topk: int = 1) -> list[int]:
        """The one check of what maps are asked for, for every command: `--target`s (names or indices) as
        distinct class indices (`-t cup -t 968` is one map), refused with `--topk` > 1 or over the classes."""
        check_targets(tuple(str(t) for t in targets), topk)
        if topk > len(self.encoder.labels) and not self.encoder.headless:
            raise UsageError(f"--topk {topk}: encoder {self.encoder.name} has only {len(self.encoder.labels)} classes")
        indices = [self.target_index(t) for t in targets]
        return list(dict.fromkeys(i for i in indices if i is not None))

    def explain_classes(self, image: Image.Image, classes: list[int] | None = None, top: int = 1) -> list[GridResult]:
        """The one way to explain classes of one picture: its maps for `classes` (default: its top `top`), the
        classes ranked by the recognition pass when there are two."""
        from attnviz.explaining import infer_pictures

        return infer_pictures(self, [image], [classes or []], top)[0]

    @property
    def two_pass(self) -> bool:
        return self.classify_size != self.size

    def preprocess(self, image: Image.Image) -> Tensor:
        return self.encoder.preprocess(image, self.size)  # (3, h, w)

    def preprocess_classify(self, image: Image.Image) -> Tensor | None:
        """The picture at the recognition scale, or None when that is the map's own pass."""
        return self.encoder.preprocess(image, self.classify_size) if self.two_pass else None  # (3, h', w')

    def infer(self, batch: Tensor, targets: list[int | None], recognise: Tensor | None = None) -> list[GridResult]:
        """(B, 3, h, w) preprocessed images of one size -> one `GridResult` each (target or top-1)."""
        classes = None if all(t is None for t in targets) else [[t] if t is not None else [] for t in targets]
        return [maps[0] for maps in self.infer_classes(batch, classes, top=1, recognise=recognise)]

    def infer_classes(
        self, batch: Tensor, classes: list[list[int]] | None, top: int = 1, recognise: Tensor | None = None
    ) -> list[list[GridResult]]:
        """One map per requested class of each image (its top `top` classes when the list for it is empty or
        `classes` is None).

        `recognise` is the same pictures at the recognition scale (`preprocess_classify`): when given, the classes
        and probabilities come from a pass over it, and the maps from the pass over `batch`.
        """
        x = batch.to(self.device)
        forward = self.engine or self.encoder  # the engine only ever serves classifier queries
        attention = self.attention
        recorded: contextlib.AbstractContextManager[Recorded] = contextlib.nullcontext(Recorded())
        if attention is not None:
            recorded = attention.recording(graph=attention.needs_gradients)
        gradients = attention.needs_gradients if attention is not None else self.query is Query.gradient
        # a pass with gradients builds its graph even inside a caller's `torch.no_grad()` or `inference_mode()`
        graph = torch.inference_mode(False) if gradients else contextlib.nullcontext()
        with recorded as seen, graph:
            if attention is not None and attention.needs_gradients:
                with torch.enable_grad():  # each block's attention on the graph, for its gradient, however frozen
                    features, logits = self.encoder(x.clone().requires_grad_())  # the network's weights are
            elif not gradients:
                with torch.inference_mode():
                    features, logits = forward(x)  # (B, C, H', W'), (B, K)
            else:
                with torch.enable_grad():
                    features, logits = self.encoder(x.clone(), track_features=True)
        classify_size = None if recognise is None else (int(recognise.shape[3]), int(recognise.shape[2]))
        if self.encoder.headless:  # a backbone: its output is features, so no classes and one map an image
            if classes and any(classes):
                raise UsageError(f"encoder {self.encoder.name} has no classifier, so no classes to explain")
            probs, top_p, top_i = None, None, None
            chosen: list[list[int]] = [[-1] for _ in range(len(x))]
        else:
            ranking = logits.detach()
            if recognise is not None:
                with torch.inference_mode():
                    _, ranking = forward(recognise.to(self.device))  # (B, K)
            probs = torch.softmax(ranking.float(), dim=-1)  # (B, K)
            top_p, top_i = probs.topk(max(self.topk, top), dim=-1)  # (B, k)
            chosen = [classes[i] if classes and classes[i] else [int(j) for j in top_i[i, :top]] for i in range(len(x))]
        rows, cols = features.shape[-2:]
        with graph, torch.enable_grad():
            grid_weights, grid_scores = self._grid_maps(seen, x, features, logits, chosen, rows, cols)  # (M, N) each
        scores = grid_scores.reshape(-1, rows, cols).cpu().numpy()
        on_device = grid_weights.reshape(-1, rows, cols)  # kept for `to_tensor`: no copy back
        weights = on_device.cpu().numpy()
        labels, size = self.encoder.labels, (x.shape[3], x.shape[2])
        results: list[list[GridResult]] = []
        m = 0
        for i, wanted in enumerate(chosen):
            topk = []
            if top_p is not None and top_i is not None:
                topk = [Prediction(int(j), labels[int(j)], float(p)) for p, j in zip(top_p[i], top_i[i], strict=True)]
            maps = []
            for index in wanted:
                target = None if probs is None else Prediction(index, labels[index], float(probs[i, index]))
                grid = {"grid": (rows, cols), "scores": scores[m], "weights": weights[m], "target": target}
                grid["device_weights"] = on_device[m]
                maps.append(GridResult(input_size=size, **grid, topk=topk[: self.topk], classify_size=classify_size))
                m += 1
            results.append(maps)
        return results

    def _grid_maps(
        self, seen: Recorded, x: Tensor, features: Tensor, logits: Tensor, chosen: list[list[int]], rows: int, cols: int
    ) -> tuple[Tensor, Tensor]:
        """(M, rows * cols) weights and scores, one row per requested map, in image-then-class order."""
        if self.cam is not None:
            return self.cam.maps(x, features, logits, chosen)
        if self.attention is None:
            assert self.scorer is not None
            owners = [i for i, wanted in enumerate(chosen) for _ in wanted]
            queries = self.queries(features, logits, chosen)  # (M, C), M = total maps
            cells = features.detach().flatten(2).transpose(1, 2).float()  # (B, N, C)
            if owners != list(range(len(chosen))):  # not one map an image: each map its image's cells
                cells = cells[torch.tensor(owners, device=features.device)]  # (M, N, C)
            with torch.inference_mode():
                scored = self.scorer(cells, queries.float())  # (M, N)
            return scored.weights, scored.scores
        weights = attention_maps(self.attention, seen, logits, chosen, rows, cols)
        return weights, self.attention.scores(weights)

    def queries(self, features: Tensor, logits: Tensor, chosen: list[list[int]]) -> Tensor:
        """(M, C) queries, one per requested map, in image-then-class order (see `attention.queries`)."""
        return class_queries(self.encoder, self.query, features, logits, chosen)

    def draw(
        self,
        result: GridResult,
        width: int,
        height: int,
        interpolation: render.Interpolation | str = render.Interpolation.bilinear,
        smooth: float = render.DEFAULT_SMOOTH,
    ) -> Explanation:
        heat = render.draw_map(result.scores, width, height, interpolation, smooth)  # (H, W)
        return Explanation(**vars(result), heatmap=heat, peak=render.peak(heat), mode=self.mode.value)

    def explain(
        self, image: Picture, target: Target = None, interpolation: render.Interpolation | str = _BILINEAR
    ) -> Explanation:
        """Where the encoder finds the evidence for `target` (default: its top-1 class) in one picture: a path, a
        Pillow image, an (H, W, 3) or (H, W) numpy array, or a (3, H, W) tensor (uint8, or floats in [0, 1])."""
        from attnviz.explaining import explain_pictures

        return explain_pictures(self, [image], [target], interpolation)[0]

    def explain_batch(
        self, images: Pictures, target: Targets = None, interpolation: str = _BILINEAR, *, batch_size: int = 16
    ) -> list[Explanation]:
        """Many pictures (a list of what `explain` takes, or a (B, 3, H, W) tensor), for one `target` or one each
        (None: the top-1): one `Explanation` each, in order, as `explain` gives; a pass serves up to `batch_size`."""
        from attnviz.explaining import explain_pictures

        return explain_pictures(self, images, target, interpolation, batch_size)


def _to_stderr(message: str) -> None:
    print(f"attnviz: {message}", file=sys.stderr)


__all__ = ["Explainer", "Explanation", "GridResult", "Prediction", "Query"]
