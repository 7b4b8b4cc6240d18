"""The training loss lives with the building blocks (`transformer_networks.nn.losses`), since the encoder-decoder
computes it too; this name is kept for code that imported it from here."""

from ..nn.losses import label_smoothed_cross_entropy

__all__ = ["label_smoothed_cross_entropy"]
