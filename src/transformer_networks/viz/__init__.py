"""Pictures: learning curves (and, with the inference work, attention maps)."""

from .curves import plot_curves, read_metrics

__all__ = ["plot_curves", "read_metrics"]
