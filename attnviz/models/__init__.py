"""Encoders: base class, a registry that imports no model, builders (embedded, timm, torchvision), weights files,
batch-norm folding, labels, devices; and the ONNX export that inference runtimes run."""

# The builders register their encoders with the registry when imported, as timm's `models/__init__.py` does: the
# registry imports none of them, so no import cycle runs through it.
from attnviz.models import embedded, timm_models, torchvision_models  # noqa: F401
