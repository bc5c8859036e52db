"""Dataset audits: the strategies a model uses per class, the flags, and the one-page report."""
