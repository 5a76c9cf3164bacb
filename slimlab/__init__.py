"""slimlab: model slimming on CIFAR-10 — the package behind the course notebooks."""
__version__ = "0.1.0"
