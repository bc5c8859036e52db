"""The package's version, in a module of its own: what a file attnviz writes records, importing nothing else."""

__version__ = "0.1.0"
