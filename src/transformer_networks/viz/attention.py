"""Attention heatmaps: a grid of layers x heads, queries down the side, keys along the top, tokens as labels."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..errors import UserError

TITLES = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention (causal)",
    "cross": "cross-attention (target queries over source keys)",
}


def select(weights: Tensor, layer: int | None, head: int | None) -> tuple[Tensor, list[int], list[int]]:
    """Pick one layer and/or one head of (L, H, Tq, Tk) weights; layers and heads count from 0."""
    n_layers, n_heads = weights.shape[:2]
    if layer is not None and not 0 <= layer < n_layers:
        raise UserError(f"--layer {layer}: the model has layers 0..{n_layers - 1}")
    if head is not None and not 0 <= head < n_heads:
        raise UserError(f"--head {head}: the model has heads 0..{n_heads - 1}")
    layers = [layer] if layer is not None else list(range(n_layers))
    heads = [head] if head is not None else list(range(n_heads))
    return weights[layers][:, heads], layers, heads


def plot_attention(
    weights: Tensor,
    queries: list[str],
    keys: list[str],
    out: str | Path,
    *,
    kind: str = "encoder",
    layer: int | None = None,
    head: int | None = None,
) -> Path:
    """Draw (L, H, Tq, Tk) attention weights to a PNG at `out`; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen, layers, heads = select(weights, layer, head)
    rows, cols = len(layers), len(heads)
    cell = max(2.0, 0.22 * max(len(queries), len(keys)))  # room for the token labels
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 1, cell * rows + 1), squeeze=False)
    labelled = max(len(queries), len(keys)) <= 60  # beyond that the labels are unreadable
    for r, layer_index in enumerate(layers):
        for c, head_index in enumerate(heads):
            ax = axes[r][c]
            ax.imshow(chosen[r, c].numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_title(f"layer {layer_index} head {head_index}", fontsize=8)
            if labelled:
                ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=6)
                ax.set_yticks(range(len(queries)), queries, fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(TITLES.get(kind, kind))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
