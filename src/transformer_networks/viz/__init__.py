"""Pictures: learning curves and attention maps."""

from .attention import plot_attention
from .curves import plot_curves, read_metrics

__all__ = ["plot_attention", "plot_curves", "read_metrics"]
