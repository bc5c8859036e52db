"""Encoders: the base class, a registry that imports no model, the embedded, timm and torchvision builders,
weights files, batch-norm folding, class names and devices."""
