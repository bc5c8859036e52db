"""Encoders: base class, a registry that imports no model, builders (embedded, timm, torchvision), weights files,
batch-norm folding, labels, devices; and the ONNX export that inference runtimes run."""
